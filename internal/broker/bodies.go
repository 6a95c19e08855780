package broker

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/culexmq/culex/internal/store"
)

// A QoS 1/2 message queued for persistent sessions is stored once: its body
// (topic, properties, payload, expiry, origin) in the Bodies bucket under a
// node-wide sequence, and one small Messages record per session (state,
// QoS, flags, packet id, subscription identifiers, group, filter) that
// names the body. The body table counts the records that reference each
// body, so that the body is deleted in the same Apply as its last record.
// The counts live in memory only: load rebuilds them from the records and
// deletes the bodies no record references (docs/durability.md, "Message
// bodies").

// bodyShards is the number of independently locked parts of the table.
const bodyShards = 16

// bodyTable is the node's stored message bodies by message.
type bodyTable struct {
	seq    atomic.Uint64 // the last body sequence handed out
	shards [bodyShards]bodyShard
}

// bodyShard is one part of the table. Its mu is held across the Apply that
// writes a new body, so that no other session's record referencing the
// body can be applied before it; it comes after session locks and before
// the store's.
type bodyShard struct {
	mu    sync.Mutex
	byMsg map[*Message]*body
}

// body is one stored message body.
type body struct {
	seq  uint64   // its Bodies key
	msg  *Message // the message every referencing copy shares
	refs int      // Messages records that reference it; guarded by its shard's mu
}

// shard is the part of the table that holds m's body.
func (t *bodyTable) shard(m *Message) *bodyShard {
	h := uint64(uintptr(unsafe.Pointer(m))) * 0x9E3779B97F4A7C15
	return &t.shards[h>>(64-4)]
}

// unlock releases a shard held by refOpsLocked; nil holds nothing.
func (sh *bodyShard) unlock() {
	if sh != nil {
		sh.mu.Unlock()
	}
}

// refOpsLocked returns the ops that write om's Messages record, taking a
// reference on om's body first if om has none. When that reference is the
// body's first, the body's Put comes first in ops and the body's shard is
// returned held: the caller applies ops and then unlocks it, so that the
// body and its first reference are one Apply that every later reference
// follows.
func (s *session) refOpsLocked(om *outMsg) ([]store.Op, *bodyShard) {
	var held *bodyShard
	ops := make([]store.Op, 0, 2)
	if om.body == nil {
		sh := s.b.bodies.shard(om.msg)
		sh.mu.Lock()
		bd := sh.byMsg[om.msg]
		if bd == nil {
			bd = &body{seq: s.b.bodies.seq.Add(1), msg: om.msg}
			if sh.byMsg == nil {
				sh.byMsg = make(map[*Message]*body)
			}
			sh.byMsg[om.msg] = bd
			ops = append(ops, store.Op{Kind: store.Put, Bucket: store.Bodies, Key: store.BodyKey(bd.seq), Value: encodeMessage(om.msg)})
			held = sh
		}
		bd.refs++
		if held == nil {
			sh.mu.Unlock()
		}
		om.body = bd
	}
	return append(ops, store.Op{Kind: store.Put, Bucket: store.Messages,
		Key: store.MessageKey(s.id, om.seq), Value: encodeOut(om)}), held
}

// releaseBody drops om's reference on its body and returns the op that
// deletes the body when that was the last one. A later store of the same
// message writes a new body under a new sequence.
func (b *Broker) releaseBody(om *outMsg) (store.Op, bool) {
	bd := om.body
	if bd == nil {
		return store.Op{}, false
	}
	om.body = nil
	sh := b.bodies.shard(bd.msg)
	sh.mu.Lock()
	bd.refs--
	last := bd.refs == 0
	if last {
		delete(sh.byMsg, bd.msg)
	}
	sh.mu.Unlock()
	if !last {
		return store.Op{}, false
	}
	return store.Op{Kind: store.Delete, Bucket: store.Bodies, Key: store.BodyKey(bd.seq)}, true
}

// forgetRecordsLocked forgets that msgs have Messages records, after
// unstoreSession deleted them all: the bodies they were the last to
// reference are deleted (in an Apply after unstoreSession's).
func (s *session) forgetRecordsLocked(msgs []*outMsg) {
	var ops []store.Op
	for _, om := range msgs {
		om.stored = false
		if op, last := s.b.releaseBody(om); last {
			ops = append(ops, op)
		}
	}
	if len(ops) > 0 {
		s.b.apply(ops, nil)
	}
}

// forgetRecords is forgetRecordsLocked for an ended session.
func (s *session) forgetRecords(msgs []*outMsg) {
	s.mu.Lock()
	s.forgetRecordsLocked(msgs)
	s.mu.Unlock()
}

// messagesLocked lists the session's in-flight and queued messages.
func (s *session) messagesLocked() []*outMsg {
	msgs := make([]*outMsg, 0, len(s.inflight)+s.qlenLocked())
	for _, om := range s.inflight {
		msgs = append(msgs, om)
	}
	return append(msgs, s.queue[s.qhead:]...)
}

// loadBodies reads every stored body, by sequence, with no reference
// counted yet, and continues the table's sequence after the highest.
func (b *Broker) loadBodies() (map[uint64]*body, error) {
	bodies := make(map[uint64]*body)
	err := b.store.Scan(store.Bodies, "", func(key string, v []byte) error {
		r := &reader{b: v}
		m := r.message()
		if len(key) != 8 || r.err != nil {
			b.log.Warn("dropping corrupt message body", "err", r.err)
			b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Bodies, Key: key}}, nil)
			return nil
		}
		seq := binary.BigEndian.Uint64([]byte(key))
		if seq > b.bodies.seq.Load() {
			b.bodies.seq.Store(seq)
		}
		bodies[seq] = &body{seq: seq, msg: m}
		return nil
	})
	return bodies, err
}

// refLoadedBody points om, decoded from a record that references a body,
// at that body, counting the reference.
func (b *Broker) refLoadedBody(om *outMsg, bodies map[uint64]*body) error {
	bd := bodies[om.body.seq]
	if bd == nil {
		return fmt.Errorf("%w: message body %d is missing", errRecord, om.body.seq)
	}
	sh := b.bodies.shard(bd.msg)
	sh.mu.Lock()
	if bd.refs == 0 {
		if sh.byMsg == nil {
			sh.byMsg = make(map[*Message]*body)
		}
		sh.byMsg[bd.msg] = bd
	}
	bd.refs++
	sh.mu.Unlock()
	om.body, om.msg = bd, bd.msg
	return nil
}

// dropOrphanBodies deletes the loaded bodies no record references: left by
// a crash between unstoreSession and forgetRecords, or by records dropped
// at load.
func (b *Broker) dropOrphanBodies(bodies map[uint64]*body) {
	var ops []store.Op
	for seq, bd := range bodies {
		if bd.refs == 0 {
			ops = append(ops, store.Op{Kind: store.Delete, Bucket: store.Bodies, Key: store.BodyKey(seq)})
		}
	}
	if len(ops) > 0 {
		b.log.Info("deleting message bodies no session references", "bodies", len(ops))
		b.apply(ops, nil)
	}
}
