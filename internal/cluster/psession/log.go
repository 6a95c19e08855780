package psession

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/culexmq/culex/internal/cluster/subject"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The body of a message in the log:
//
//	version   byte (1)
//	client id uvarint length and bytes: the session of a StoreFor
//	          message (its subject holds a key, maybe a digest); empty
//	          otherwise
//	message   broker.EncodeMessage: topic, QoS, retain, properties,
//	          origin, payload, and the expiry as an absolute deadline,
//	          so that time spent in the log counts
const bodyVersion = 1

var errBody = errors.New("psession: unreadable message in the log")

func encodeBody(clientID string, m *broker.Message) []byte {
	b := make([]byte, 0, 2+len(clientID)+48+len(m.Topic)+len(m.Payload))
	b = append(b, bodyVersion)
	b = binary.AppendUvarint(b, uint64(len(clientID)))
	b = append(b, clientID...)
	return append(b, broker.EncodeMessage(m)...)
}

func decodeBody(b []byte) (clientID string, m *broker.Message, err error) {
	if len(b) < 2 || b[0] != bodyVersion {
		return "", nil, errBody
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || uint64(len(b)-1-k) < n {
		return "", nil, errBody
	}
	clientID = string(b[1+k : 1+k+int(n)])
	m, err = broker.DecodeMessage(b[1+k+int(n):])
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", errBody, err)
	}
	return clientID, m, nil
}

// topicSubject is the log's subject of a message on topic t.
func (s *Store) topicSubject(t string) string {
	return string(subject.Append([]byte(s.subPre+"pm."), t))
}

// forSubject is the log's subject of the messages for clientID only.
func (s *Store) forSubject(clientID string) string {
	return s.subPre + "pd." + registry.Key(clientID)
}

// Store implements broker.SessionStore: one write to the log, acknowledged
// once a majority of the cores stored it (docs/durability.md).
func (s *Store) Store(m *broker.Message, done func(seq uint64, err error)) {
	s.write(s.topicSubject(m.Topic), "", m, done)
}

// StoreFor implements broker.SessionStore.
func (s *Store) StoreFor(clientID string, m *broker.Message, done func(seq uint64, err error)) {
	s.write(s.forSubject(clientID), clientID, m, done)
}

func (s *Store) write(subj, clientID string, m *broker.Message, done func(uint64, error)) {
	msg := nats.NewMsg(subj)
	msg.Data = encodeBody(clientID, m)
	s.w.add(&op{msg: msg, done: func(seq uint64, err error) {
		if err != nil {
			s.stats.StoreFailed.Add(1)
			err = fmt.Errorf("psession: store %q: %w", m.Topic, err)
		} else {
			s.stats.Stored.Add(1)
		}
		done(seq, err)
	}})
}

// Head implements broker.SessionStore. Head is set to seq before fn is
// called with seq: a session registered for Deliver once Head returned h
// reads its backlog up to h and ignores Deliver's calls with seq <= h.
func (s *Store) Head() uint64 { return s.head.Load() }

// Deliver implements broker.SessionStore: one reader of the whole log on
// this node (reader.go), starting after the log's last message when the
// Store is ready (Config.ReaderOnDemand: and held); it goes on from the
// message after the last one handed over whenever it has to make its
// consumer again, so nothing is skipped or repeated.
func (s *Store) Deliver(fn func(seq uint64, clientID string, m *broker.Message)) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.deliverFn = fn
	if s.ready.Load() {
		if err := s.startReaderLocked(s.ctx); err != nil {
			s.log.Error("cluster: persistent sessions: the log's reader did not start", "err", err)
		}
	}
}

// readerRun is one run of the reader's goroutine.
type readerRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startReaderLocked starts the reader after the log's last message now
// (the caller waits for that position, so that every message stored after
// it returns is read): at Start when Deliver came first, else in Deliver;
// on demand, only while held (HoldReader), and again after a rest. A
// reader started on demand first calls fn(last, "", nil): no message up
// to last is for this node (none of its sessions held the reader while
// it did not run).
func (s *Store) startReaderLocked(ctx context.Context) error {
	s.hm.Lock()
	want := !s.cfg.ReaderOnDemand || s.holds > 0
	s.hm.Unlock()
	if s.run != nil || s.deliverFn == nil || !want {
		return nil
	}
	last, err := s.lastSeq(ctx)
	if err != nil {
		return err
	}
	s.head.Store(last)
	fn := s.deliverFn
	if s.cfg.ReaderOnDemand {
		fn(last, "", nil)
	}
	rctx, cancel := context.WithCancel(s.ctx)
	run := &readerRun{cancel: cancel, done: make(chan struct{})}
	s.run = run
	s.hm.Lock()
	s.active = true
	s.hm.Unlock()
	s.stats.ReaderStarts.Add(1)
	s.goRun(func() {
		defer close(run.done)
		s.read(rctx, fn)
	})
	return nil
}

// HoldReader makes sure the reader of the log runs, and keeps it running
// until ReleaseReader is called as many times (Config.ReaderOnDemand; without
// it the reader runs anyway). A reader that does not run is started
// first: HoldReader returns once its position is the log's last message
// (Head), so that every message stored after it returns is handed to
// Deliver's fn. It fails (the hold not taken) before Start and Deliver,
// or when the log's leader does not answer before ctx ends. The caller
// must not hold a lock that Deliver's fn takes: starting may wait for
// the end of a rest, which waits for fn.
func (s *Store) HoldReader(ctx context.Context) error {
	s.hm.Lock()
	s.holds++
	if s.rest != nil {
		s.rest.Stop()
		s.rest = nil
	}
	active := s.active
	s.hm.Unlock()
	if active || !s.cfg.ReaderOnDemand {
		return nil
	}
	s.startMu.Lock()
	defer s.startMu.Unlock()
	err := s.Ready()
	if err == nil && s.deliverFn == nil {
		err = errors.New("psession: the log's reader is held before Deliver")
	}
	if err == nil {
		err = s.startReaderLocked(ctx)
	}
	if err != nil {
		s.ReleaseReader()
		return fmt.Errorf("psession: the log's reader: %w", err)
	}
	return nil
}

// ReleaseReader gives back a hold of HoldReader. With none left the
// reader stops after Config.ReaderLinger, unless held again meanwhile.
// It never waits.
func (s *Store) ReleaseReader() {
	s.hm.Lock()
	defer s.hm.Unlock()
	if s.holds <= 0 {
		s.log.Error("cluster: persistent sessions: the log's reader released more often than held")
		return
	}
	s.holds--
	if s.holds == 0 && s.cfg.ReaderOnDemand && s.active && s.rest == nil {
		s.restGen++
		gen := s.restGen
		s.rest = time.AfterFunc(s.cfg.ReaderLinger, func() { s.restReader(gen) })
	}
}

// restReader stops the reader that nothing held for Config.ReaderLinger
// (gen names the timer that decided it); a hold taken meanwhile keeps it.
func (s *Store) restReader(gen uint64) {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.hm.Lock()
	if s.rest == nil || s.restGen != gen || s.holds > 0 || !s.active {
		s.hm.Unlock()
		return
	}
	s.rest, s.active = nil, false
	s.hm.Unlock()
	run := s.run
	s.run = nil
	run.cancel()
	<-run.done
	s.stats.ReaderStops.Add(1)
	s.log.Debug("cluster: persistent sessions: the log's reader rests: no session of this node holds it", "head", s.head.Load())
}

// lastSeq is the log's last sequence, asked until its leader answers.
func (s *Store) lastSeq(ctx context.Context) (uint64, error) {
	for attempt := 0; ; attempt++ {
		c, cancel := s.opCtx(ctx)
		info, err := s.plog.Info(c)
		cancel()
		if err == nil {
			return info.State.LastSeq, nil
		}
		s.log.Warn("cluster: persistent sessions: the log's reader waits for the log", "err", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-s.ctx.Done():
			return 0, ErrClosed
		case <-time.After(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond):
		}
	}
}

// Get implements broker.SessionStore: a read at the log's leader.
func (s *Store) Get(ctx context.Context, seq uint64) (*broker.Message, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	raw, err := s.plog.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("psession: message %d: %w (%w)", seq, broker.ErrMessageGone, err)
	}
	if err != nil {
		return nil, fmt.Errorf("psession: message %d: %w", seq, err)
	}
	_, m, err := decodeBody(raw.Data)
	return m, err
}
