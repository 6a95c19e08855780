package kafka

import (
	"sort"
	"time"
)

// The admin API's view of held records (stuck.go): spooled entries Kafka
// refused, kept and retried with backoff. An operator may retry a topic
// at once, or drop its held records, which were acknowledged to devices
// and are then lost (counted in the route's Failed).

// HeldRecord is one held spool entry.
type HeldRecord struct {
	Seq      uint64
	Topic    string
	Route    string
	Key      []byte
	Size     int64
	Since    time.Time // the topic's first refusal
	Retrying bool      // with the producer now
}

// Held lists the held records by topic and log order.
func (b *Bridge) Held() []HeldRecord {
	s := b.spool
	if s == nil {
		return nil
	}
	var out []HeldRecord
	s.stuckMu.Lock()
	for t, st := range s.stuck {
		for _, x := range st.entries {
			out = append(out, s.heldRecord(t, st, x, false))
		}
		if st.retrying {
			out = append(out, HeldRecord{Seq: st.retrySeq, Topic: t, Since: st.since, Retrying: true})
		}
	}
	s.stuckMu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Seq < out[j].Seq
	})
	return out
}

func (s *spool) heldRecord(t string, st *stuckTopic, x stuckEntry, retrying bool) HeldRecord {
	h := HeldRecord{Seq: x.seq, Topic: t, Key: x.e.rec.Key, Size: x.e.size, Since: st.since, Retrying: retrying}
	if rt := s.route(x.e); rt != nil {
		h.Route = rt.name
	}
	return h
}

// RetryHeld retries the held records of Kafka topic t at once (their next
// refusal starts the backoff again); false when none are held.
func (b *Bridge) RetryHeld(t string) bool {
	s := b.spool
	if s == nil {
		return false
	}
	s.stuckMu.Lock()
	defer s.stuckMu.Unlock()
	st := s.stuck[t]
	if st == nil {
		return false
	}
	st.backoff, st.next = stuckRetryMin, time.Now()
	b.log.Info("kafka spool: held records retried by an operator", "topic", t, "held", len(st.entries))
	return true
}

// DropHeld gives up the held records of Kafka topic t (all but one being
// retried at this moment, which Kafka takes or holds again): they leave
// the spool as if Kafka had taken them, counted as failed. It returns how
// many were dropped and false when none were held.
func (b *Bridge) DropHeld(t string) (int, bool) {
	s := b.spool
	if s == nil {
		return 0, false
	}
	s.stuckMu.Lock()
	st := s.stuck[t]
	if st == nil {
		s.stuckMu.Unlock()
		return 0, false
	}
	drop := st.entries
	st.entries = nil
	if !st.retrying {
		delete(s.stuck, t)
	}
	s.stuckMu.Unlock()
	for _, x := range drop {
		if rt := s.route(x.e); rt != nil {
			rt.stats.Failed.Add(1)
			rt.stats.AckedNotInKafka.Add(-1)
			rt.stats.SpoolBytes.Add(-x.e.size)
		}
		s.ack(x.seq, x.e.size)
		<-s.sem
	}
	b.log.Warn("kafka spool: held records dropped by an operator; they were acknowledged to devices and are lost",
		"topic", t, "dropped", len(drop))
	return len(drop), true
}
