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
// Store is ready; it goes on from the message after the last one handed
// over whenever it has to make its consumer again, so nothing is skipped
// or repeated.
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

// startReaderLocked starts the reader after the log's last message now
// (the caller waits for that position, so that every message stored after
// it returns is read): at Start when Deliver came first, else in Deliver.
func (s *Store) startReaderLocked(ctx context.Context) error {
	if s.reading || s.deliverFn == nil {
		return nil
	}
	last, err := s.lastSeq(ctx)
	if err != nil {
		return err
	}
	s.head.Store(last)
	s.reading = true
	fn := s.deliverFn
	s.goRun(func() { s.read(fn) })
	return nil
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
