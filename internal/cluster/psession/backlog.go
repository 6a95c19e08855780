package psession

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/subject"
	"github.com/nats-io/nats.go/jetstream"
)

// backlogGets is how many messages Backlog reads one by one at the log's
// leader before it reads the rest with a consumer.
const backlogGets = 256

// Backlog implements broker.SessionStore. The log's subjects of the
// session are those of its filters (not the shared ones: a group's
// messages are the member's StoreFor ones; a filter ending in '#' has
// two) and that of its StoreFor messages. Every
// message read is checked against the filters again: subjects cannot say
// MQTT's rule for topics starting with '$'.
//
// The first backlogGets messages are read at the log's leader, one
// message-get request per message (the next one at or after a sequence on
// each subject, merged in sequence order): no consumer to make, which
// would go through the cluster's meta leader twice (create, delete). A
// longer backlog goes on with a short-lived consumer (readRange).
//
// dropped counts the sequences of the range that the log had removed
// when the read ended and that were not read: the log cannot tell which
// of them the session was owed, so this is an upper bound.
func (s *Store) Backlog(ctx context.Context, clientID string, filters []string, from, to uint64,
	fn func(seq uint64, clientID string, m *broker.Message) error) (dropped uint64, err error) {
	if err := s.Ready(); err != nil {
		return 0, err
	}
	defer func() {
		if err == nil {
			s.stats.Backlogs.Add(1)
			s.stats.BacklogDropped.Add(dropped)
		}
	}()
	if to <= from {
		return 0, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	// No stream info first: the gets find nothing past the log's end,
	// and nothing the log removed.
	b := &backlogRead{s: s, clientID: clientID, filters: plainFilters(filters), to: to, fn: fn}
	b.subjects = []string{s.forSubject(clientID)}
	for _, f := range b.filters {
		for _, sub := range subject.Filter(f) {
			b.subjects = append(b.subjects, s.subPre+"pm."+sub)
		}
	}
	b.subjects = minimalSubjects(b.subjects)
	at, done, err := b.byGets(ctx, from)
	if err == nil && !done {
		err = b.byConsumer(ctx, at)
	}
	if err != nil {
		return 0, fmt.Errorf("psession: backlog of %q: %w", clientID, err)
	}
	seqs := b.seqs // the sequences read
	s.stats.BacklogRead.Add(uint64(len(seqs)))
	first, err := s.firstSeq(ctx)
	if err != nil {
		return 0, fmt.Errorf("psession: backlog of %q: %w", clientID, err)
	}
	gone := min(to, max(first, 1)-1) // the last sequence of the range the log no longer holds
	if gone <= from {
		return 0, nil
	}
	var readBelow uint64
	for _, q := range seqs {
		if q <= gone {
			readBelow++
		}
	}
	return gone - from - readBelow, nil
}

// backlogRead is one Backlog call.
type backlogRead struct {
	s        *Store
	clientID string
	filters  []string // plain filters
	subjects []string // the log's subjects of the session
	to       uint64
	fn       func(uint64, string, *broker.Message) error
	seqs     []uint64 // the sequences handed to fn
}

// take hands the message at seq to fn if it is for the session.
func (b *backlogRead) take(seq uint64, subj string, data []byte) error {
	owner, m, err := decodeBody(data)
	if err != nil {
		b.s.stats.Unreadable.Add(1)
		b.s.log.Warn("cluster: persistent sessions: unreadable message in the log", "seq", seq, "err", err)
		return nil
	}
	ok := owner == b.clientID
	if !strings.HasPrefix(subj, b.s.subPre+"pd.") {
		ok, owner = matchAny(b.filters, m.Topic), ""
	}
	if !ok {
		return nil
	}
	if err := b.fn(seq, owner, m); err != nil {
		return err
	}
	b.seqs = append(b.seqs, seq)
	return nil
}

// byGets reads the messages after from at the log's leader, merging the
// next message of each subject in sequence order, until to or until
// backlogGets messages were read: done is false then, and the read goes
// on after at.
func (b *backlogRead) byGets(ctx context.Context, from uint64) (at uint64, done bool, err error) {
	heads := make([]*jetstream.RawStreamMsg, len(b.subjects)) // nil: nothing more on that subject
	next := func(i int, seq uint64) error {
		m, err := b.s.plog.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(b.subjects[i]))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			m = nil
		case err != nil:
			return err
		case m.Sequence > b.to:
			m = nil
		}
		heads[i] = m
		return nil
	}
	for i := range heads {
		if err := next(i, from+1); err != nil {
			return from, false, err
		}
	}
	at = from
	for n := 0; ; n++ {
		var low *jetstream.RawStreamMsg
		for _, h := range heads {
			if h != nil && (low == nil || h.Sequence < low.Sequence) {
				low = h
			}
		}
		if low == nil {
			return b.to, true, nil
		}
		if n == backlogGets {
			return at, false, nil
		}
		if err := b.take(low.Sequence, low.Subject, low.Data); err != nil {
			return at, false, err
		}
		at = low.Sequence
		// Overlapping subjects ("a.*", "*.b") may both have it.
		for i, h := range heads {
			if h != nil && h.Sequence == at {
				if err := next(i, at+1); err != nil {
					return at, false, err
				}
			}
		}
	}
}

// byConsumer reads the messages of (from, to] with a short-lived consumer
// of the log (ephemeral, in memory, one replica, deleted afterwards).
// JetStream may place it on a replica that has not applied the range's
// last messages yet: a read that stopped when the replica had nothing
// more could miss them. So the subject of the message at to (read at the
// leader) is a filter subject too, and the read ends only with that
// message (handed to fn only if it is for the session).
func (b *backlogRead) byConsumer(ctx context.Context, from uint64) error {
	s := b.s
	fence, err := s.plog.GetMsg(ctx, b.to)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // removed by the limits meanwhile, with all before it
	}
	if err != nil {
		return err
	}
	cons, err := s.plog.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubjects:    minimalSubjects(append(b.subjects, fence.Subject)),
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		_ = s.plog.DeleteConsumer(c, cons.CachedInfo().Name)
		cancel()
	}()
	var delivered uint64 // the consumer's own sequence: no gap allowed
	for {
		deadline, _ := ctx.Deadline()
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(max(time.Until(deadline), time.Millisecond)))
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return err
			}
			if meta.Sequence.Consumer != delivered+1 {
				return fmt.Errorf("a message was lost in transit (consumer sequence %d after %d)", meta.Sequence.Consumer, delivered)
			}
			delivered++
			seq := meta.Sequence.Stream
			if seq > b.to {
				return nil
			}
			if err := b.take(seq, msg.Subject(), msg.Data()); err != nil {
				return err
			}
			if seq == b.to {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("the log did not answer: %w", context.DeadlineExceeded)
		}
	}
}

// infoShare gathers the concurrent callers of firstSeq into shared
// stream info requests: in a reconnect storm thousands of sessions read
// their backlogs at once, and one request each would queue at the log's
// leader behind each other. A caller never takes the answer of a request
// sent before it called (it must see what the log removed up to then):
// it joins the next request, which the first of its joiners sends once
// the one in flight is answered.
type infoShare struct {
	mu      sync.Mutex
	next    *infoCall     // the request callers join; nil: none yet
	sending bool          // a request is in flight
	idle    chan struct{} // closed when the request in flight is answered
}

// infoCall is one shared stream info request.
type infoCall struct {
	done  chan struct{} // closed once first and err are set
	first uint64
	err   error
}

// firstSeq returns the log's first sequence, from a stream info request
// sent after the call began.
func (s *Store) firstSeq(ctx context.Context) (uint64, error) {
	sh := &s.info
	sh.mu.Lock()
	if sh.next == nil {
		sh.next = &infoCall{done: make(chan struct{})}
	}
	c := sh.next
	sh.mu.Unlock()
	for {
		sh.mu.Lock()
		send := !sh.sending && sh.next == c
		if send {
			sh.sending, sh.next = true, nil
		}
		if sh.idle == nil {
			sh.idle = make(chan struct{})
		}
		idle := sh.idle
		sh.mu.Unlock()
		if send {
			rctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
			info, err := s.plog.Info(rctx)
			cancel()
			if err == nil {
				c.first = info.State.FirstSeq
			}
			c.err = err
			close(c.done)
			sh.mu.Lock()
			sh.sending = false
			close(sh.idle)
			sh.idle = nil
			sh.mu.Unlock()
		}
		select {
		case <-c.done:
			return c.first, c.err
		case <-idle: // the request in flight was answered: maybe send c
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
