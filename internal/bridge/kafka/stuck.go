package kafka

import (
	"context"
	"sort"
	"time"
)

// Retry pacing of entries Kafka refused.
const (
	stuckRetryMin   = 500 * time.Millisecond
	stuckRetryMax   = 30 * time.Second
	stuckLogEvery   = 10 * time.Second
	stuckRetryCheck = 100 * time.Millisecond
)

// stuckTopic holds the spool entries of one Kafka topic that Kafka refused
// (typically: the topic was deleted after they were acknowledged), and the
// later entries of that topic, in log order. They keep their place in the
// spool (the checkpoint cannot pass them), so a crash loses none; the head
// is retried with backoff and, once Kafka takes it, the rest follow in
// order. Other topics keep draining around them.
type stuckTopic struct {
	entries  []stuckEntry // sorted by seq
	since    time.Time    // first refusal
	next     time.Time    // next retry of the head
	backoff  time.Duration
	retrying bool   // the head is with the producer
	retrySeq uint64 // which entry that is
	lastLog  time.Time
}

type stuckEntry struct {
	seq uint64
	e   *spoolEntry
}

// queueIfStuck queues entry seq behind its topic's stuck entries, if any.
func (s *spool) queueIfStuck(e *spoolEntry, seq uint64) bool {
	s.stuckMu.Lock()
	defer s.stuckMu.Unlock()
	st := s.stuck[e.rec.Topic]
	if st == nil {
		return false
	}
	st.insert(stuckEntry{seq, e})
	return true
}

func (st *stuckTopic) insert(x stuckEntry) {
	i := sort.Search(len(st.entries), func(i int) bool { return st.entries[i].seq >= x.seq })
	st.entries = append(st.entries, stuckEntry{})
	copy(st.entries[i+1:], st.entries[i:])
	st.entries[i] = x
}

// hold keeps an entry Kafka refused and schedules a retry of its topic.
func (s *spool) hold(e *spoolEntry, seq uint64, err error) {
	now := time.Now()
	topic := e.rec.Topic
	s.stuckMu.Lock()
	st := s.stuck[topic]
	if st == nil {
		st = &stuckTopic{since: now, backoff: stuckRetryMin, next: now.Add(stuckRetryMin)}
		s.stuck[topic] = st
	}
	st.insert(stuckEntry{seq, e})
	if st.retrying && st.retrySeq == seq { // the retried head failed again
		st.retrying = false
		st.backoff = min(2*st.backoff, stuckRetryMax)
		st.next = now.Add(st.backoff)
	}
	logIt := now.Sub(st.lastLog) >= stuckLogEvery
	if logIt {
		st.lastLog = now
	}
	n, since := len(st.entries), st.since
	s.stuckMu.Unlock()
	if logIt {
		name := ""
		if rt := s.route(e); rt != nil {
			name = rt.name
		}
		s.log.Error("kafka spool: Kafka refuses records; holding them (acknowledged, not dropped) until it takes them",
			"topic", topic, "route", name, "held", n, "since", since, "retry_in", st.backoff, "err", err)
	}
}

// retryLoop retries the head of every stuck topic whose backoff passed.
func (s *spool) retryLoop(ctx context.Context) {
	tick := time.NewTicker(stuckRetryCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		s.stuckMu.Lock()
		var heads []stuckEntry
		var topics []string
		for t, st := range s.stuck {
			if st.retrying || now.Before(st.next) || len(st.entries) == 0 {
				continue
			}
			st.retrying, st.retrySeq = true, st.entries[0].seq
			heads = append(heads, st.entries[0])
			topics = append(topics, t)
			st.entries = st.entries[1:]
		}
		s.stuckMu.Unlock()
		for i, h := range heads {
			t := topics[i]
			// The producer may hold a stale view of the topic (a deleted
			// and recreated topic has a new id it would never learn, and
			// new producer sequence numbers): forget it, so this retry
			// loads fresh metadata. The topic's records are all held here,
			// so nothing buffered is lost (a straggler fails and is held).
			s.cl.PurgeTopicsFromProducing(t)
			s.send(h.e, h.seq, func() { s.unstick(t) })
		}
	}
}

// unstick runs once Kafka took a stuck topic's head: the entries queued
// behind it go to the producer in order, then the topic drains normally.
func (s *spool) unstick(topic string) {
	for {
		s.stuckMu.Lock()
		st := s.stuck[topic]
		if st == nil {
			s.stuckMu.Unlock()
			return
		}
		if len(st.entries) == 0 {
			delete(s.stuck, topic)
			s.stuckMu.Unlock()
			s.log.Info("kafka spool: Kafka takes the held records again", "topic", topic, "held_for", time.Since(st.since))
			return
		}
		batch := st.entries
		st.entries = nil
		// Should one fail again, it waits the shortest backoff.
		st.retrying, st.backoff, st.next = false, stuckRetryMin, time.Now().Add(stuckRetryMin)
		s.stuckMu.Unlock()
		for _, x := range batch {
			s.send(x.e, x.seq, nil)
		}
	}
}

// stuckStats counts the held entries, names their topics and gives the age
// of the oldest refusal.
func (s *spool) stuckStats() (n int64, age time.Duration, topics []string) {
	s.stuckMu.Lock()
	defer s.stuckMu.Unlock()
	var oldest time.Time
	for t, st := range s.stuck {
		n += int64(len(st.entries))
		if st.retrying {
			n++
		}
		topics = append(topics, t)
		if oldest.IsZero() || st.since.Before(oldest) {
			oldest = st.since
		}
	}
	sort.Strings(topics)
	if !oldest.IsZero() {
		age = time.Since(oldest)
	}
	return n, age, topics
}
