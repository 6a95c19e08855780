package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/culexmq/culex/internal/store"
)

// Record kinds: the first byte of every value the broker stores.
const (
	recSession byte = 1 // Sessions: session state
	recOut     byte = 2 // Messages: a queued or in-flight outbound message
	recInbound byte = 3 // Messages: an inbound QoS 2 packet id awaiting PUBREL
	recMessage byte = 4 // Retained: a message
	recWill    byte = 5 // Wills: a delayed will
	recOutRef  byte = 6 // Messages: as recOut, with the message in Bodies
)

var errRecord = errors.New("broker: corrupt store record")

// saveLocked writes the session record: version, expiry, disconnect time,
// username, subscriptions, the authenticator's state (ClientInfo) and the
// owner. Records written before the state was added end after the
// subscriptions; those written before ownership end after the state.
func (s *session) saveLocked() {
	if s.b.cstore != nil {
		s.csaveLocked(nil)
		return
	}
	if s.gone {
		return // a late packet of a taken-over connection must not revive it
	}
	b := make([]byte, 0, 32+len(s.subs)*24)
	b = append(b, recSession, byte(s.version))
	b = binary.BigEndian.AppendUint32(b, s.expiry)
	b = binary.BigEndian.AppendUint64(b, uint64(s.discAt))
	b = appendString(b, s.info.Username)
	b = binary.AppendUvarint(b, uint64(len(s.subs)))
	for f, o := range s.subs {
		b = appendString(b, f)
		b = append(b, packOpts(o))
		b = binary.AppendUvarint(b, uint64(o.ID))
	}
	b = binary.AppendUvarint(b, uint64(len(s.info.AuthState)))
	b = append(b, s.info.AuthState...)
	if s.ownerKnown {
		b = append(b, 1)
		b = appendString(b, s.owner)
	}
	s.b.apply([]store.Op{{Kind: store.Put, Bucket: store.Sessions, Key: s.id, Value: b}}, nil)
}

// unstoreSessionLocked deletes a session's record and messages; s.mu is
// held. In a cluster the record's delete is conditional (cdeleteLocked).
func (b *Broker) unstoreSessionLocked(s *session) {
	if b.cstore != nil {
		s.cdeleteLocked()
		return
	}
	id := s.id
	b.apply([]store.Op{
		{Kind: store.Delete, Bucket: store.Sessions, Key: id},
		{Kind: store.DeletePrefix, Bucket: store.Messages, Key: store.SessionPrefix(id)},
	}, nil)
}

func packOpts(o subOpts) byte {
	f := o.QoS | o.RH<<4
	if o.NoLocal {
		f |= 1 << 2
	}
	if o.RAP {
		f |= 1 << 3
	}
	return f
}

func unpackOpts(f byte) subOpts {
	return subOpts{QoS: f & 3, NoLocal: f&(1<<2) != 0, RAP: f&(1<<3) != 0, RH: f >> 4 & 3}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeOut is the Messages record of om: state, delivery QoS and flags,
// packet id, subscription identifiers, shared group and filter, then the
// sequence of the body it references (recOutRef) or, without one, the
// message itself (recOut, the only kind before bodies were shared).
func encodeOut(om *outMsg) []byte {
	kind, n := recOut, 64+len(om.msg.Topic)+len(om.msg.Payload)
	if om.body != nil {
		kind, n = recOutRef, 32+len(om.group)+len(om.filter)+4*len(om.subIDs)
	}
	b := make([]byte, 0, n)
	flags := om.qos
	if om.retain {
		flags |= 4
	}
	if om.keep {
		flags |= 8
	}
	b = append(b, kind, om.state, flags)
	b = binary.BigEndian.AppendUint16(b, om.pid)
	b = binary.AppendUvarint(b, uint64(len(om.subIDs)))
	for _, id := range om.subIDs {
		b = binary.AppendUvarint(b, uint64(id))
	}
	b = appendString(b, om.group)
	b = appendString(b, om.filter)
	if om.body != nil {
		return binary.AppendUvarint(b, om.body.seq)
	}
	return appendMessage(b, om.msg)
}

// encodeMessage is the Retained record of m.
func encodeMessage(m *Message) []byte {
	return appendMessage(make([]byte, 0, 48+len(m.Topic)+len(m.Payload)), m)
}

// appendMessage appends m: expiry deadline, origin client id (for no-local),
// and the message as a v5 PUBLISH (topic, QoS, retain, properties, payload).
func appendMessage(b []byte, m *Message) []byte {
	b = append(b, recMessage)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Expiry))
	b = appendString(b, m.Origin)
	p := packet.Publish{QoS: m.QoS, Retain: m.Retain, Topic: m.Topic, Props: *m.Properties(), Payload: m.Payload}
	if p.QoS > 0 {
		p.PacketID = 1
	}
	out, err := p.Encode(b, packet.V5)
	if err != nil {
		return b // decodeMessage reports the record corrupt
	}
	return out
}

// reader walks a stored record.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errRecord
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uint(n int) uint64 {
	if r.err != nil || len(r.b) < n {
		r.err = errRecord
		return 0
	}
	var v uint64
	for _, c := range r.b[:n] {
		v = v<<8 | uint64(c)
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errRecord
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// message decodes what appendMessage wrote; the message owns its bytes.
func (r *reader) message() *Message {
	if r.byte() != recMessage {
		r.err = errRecord
	}
	exp := int64(r.uint(8))
	origin := r.string()
	if r.err != nil {
		return nil
	}
	body := append([]byte(nil), r.b...)
	fh, n, err := packet.ParseFixedHeader(body)
	if err != nil {
		r.err = fmt.Errorf("%w: %v", errRecord, err)
		return nil
	}
	pk, err := packet.Decode(fh, body[n:], packet.V5)
	p, ok := pk.(*packet.Publish)
	if err != nil || !ok {
		r.err = fmt.Errorf("%w: %v", errRecord, err)
		return nil
	}
	r.b = nil
	return &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Props: messageProps(&p.Props), Origin: origin, Expiry: exp}
}

// decodeOut decodes a Messages record of either kind. For a recOutRef the
// message is left nil and body holds only the body's sequence, for the
// caller to resolve.
func decodeOut(v []byte) (*outMsg, error) {
	r := &reader{b: v}
	kind := r.byte()
	if kind != recOut && kind != recOutRef {
		return nil, errRecord
	}
	om := &outMsg{state: r.byte()}
	flags := r.byte()
	om.qos, om.retain, om.keep = flags&3, flags&4 != 0, flags&8 != 0
	om.pid = uint16(r.uint(2))
	if n := r.uvarint(); n > 0 && n < 1<<16 {
		om.subIDs = make([]uint32, n)
		for i := range om.subIDs {
			om.subIDs[i] = uint32(r.uvarint())
		}
	}
	om.group = r.string()
	om.filter = r.string()
	if kind == recOutRef {
		om.body = &body{seq: r.uvarint()}
		return om, r.err
	}
	om.msg = r.message()
	return om, r.err
}

func encodeWill(w *will) []byte {
	b := make([]byte, 0, 64+len(w.msg.Topic)+len(w.msg.Payload))
	b = append(b, recWill)
	b = binary.BigEndian.AppendUint32(b, w.delay)
	b = binary.BigEndian.AppendUint32(b, w.expiry)
	hasExp := byte(0)
	if w.hasExp {
		hasExp = 1
	}
	b = append(b, hasExp)
	b = binary.BigEndian.AppendUint64(b, uint64(w.deadline))
	return appendMessage(b, w.msg)
}

func decodeWill(v []byte) (*will, error) {
	r := &reader{b: v}
	if r.byte() != recWill {
		return nil, errRecord
	}
	w := &will{delay: uint32(r.uint(4)), expiry: uint32(r.uint(4))}
	w.hasExp = r.byte() == 1
	w.deadline = int64(r.uint(8))
	w.msg = r.message()
	return w, r.err
}

// load restores retained messages, persistent sessions with their messages,
// and pending wills; sessions that expired while the broker was down end
// now (publishing their wills).
func (b *Broker) load() error {
	if err := b.loadRetained(); err != nil {
		return err
	}
	sessions := make(map[string]*session)
	err := b.store.Scan(store.Sessions, "", func(key string, v []byte) error {
		s, err := b.decodeSession(key, v)
		if err != nil {
			b.log.Warn("dropping corrupt session record", "client", key, "err", err)
			return nil
		}
		sessions[key] = s
		return nil
	})
	if err != nil {
		return err
	}
	if err := b.loadMessages(sessions); err != nil {
		return err
	}
	for _, s := range sessions {
		b.mu.Lock()
		b.sessions[s.id] = s
		b.mu.Unlock()
		b.stats.persistent.Add(1)
		b.owned.add(s.owner, 1)
		for f, o := range s.subs {
			b.indexSubscribe(s, f, o)
		}
	}
	// Wills and expiries last: a will may be published now, and every
	// restored subscription must see it.
	if err := b.loadWills(sessions); err != nil {
		return err
	}
	now := time.Now().Unix()
	for _, s := range sessions {
		if s.expiry == expiryNever {
			continue
		}
		left := s.discAt + int64(s.expiry) - now
		if left <= 0 {
			b.endSession(s, nil)
			continue
		}
		b.scheduleExpiry(s, time.Duration(left)*time.Second)
	}
	return nil
}

func (b *Broker) loadRetained() error {
	now := time.Now().UnixNano()
	return b.store.Scan(store.Retained, "", func(key string, v []byte) error {
		r := &reader{b: v}
		m := r.message()
		if r.err != nil || m.expired(now) {
			b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Retained, Key: key}}, nil)
			return nil
		}
		b.retMu.Lock()
		old, had := b.retained.Get(m.Topic)
		b.retained.Set(m.Topic, m)
		b.retUse.addLocked(m, old, had)
		b.retMu.Unlock()
		return nil
	})
}

func (b *Broker) decodeSession(id string, v []byte) (*session, error) {
	r := &reader{b: v}
	if r.byte() != recSession {
		return nil, errRecord
	}
	s := newSession(b, id)
	s.version = packet.Version(r.byte())
	s.expiry = uint32(r.uint(4))
	s.discAt = int64(r.uint(8))
	s.persistent = true
	s.info = &ClientInfo{ClientID: id, Version: s.version, Username: r.string()}
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		f := r.string()
		o := unpackOpts(r.byte())
		o.ID = uint32(r.uvarint())
		if s.subs == nil {
			s.subs = make(map[string]subOpts)
		}
		s.subs[f] = o
	}
	if r.err == nil && len(r.b) > 0 {
		if st := r.string(); st != "" {
			s.info.AuthState = []byte(st)
		}
	}
	if r.err == nil && len(r.b) > 0 && r.byte() == 1 {
		s.owner, s.ownerKnown = r.string(), true
		s.info.Owner = s.owner
	}
	return s, r.err
}

// indexSubscribe adds a restored subscription to the indexes.
func (b *Broker) indexSubscribe(s *session, f string, o subOpts) {
	if group, inner, ok, _ := topic.ParseShared(f); ok {
		b.shared.Subscribe(group, inner, s, o)
		return
	}
	b.subs.Subscribe(f, s, o)
}

// loadMessages restores the sessions' queued and in-flight messages and
// inbound QoS 2 packet ids, sharing each stored body among the copies that
// reference it, and deletes what belongs to no session: records of a
// missing session, bodies no record references.
func (b *Broker) loadMessages(sessions map[string]*session) error {
	bodies, err := b.loadBodies()
	if err != nil {
		return err
	}
	err = b.store.Scan(store.Messages, "", func(key string, v []byte) error {
		if len(key) < 9 || key[len(key)-9] != 0 {
			return nil
		}
		id := key[:len(key)-9]
		seq := binary.BigEndian.Uint64([]byte(key[len(key)-8:]))
		s := sessions[id]
		if s == nil {
			b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Messages, Key: key}}, nil)
			return nil
		}
		if len(v) > 0 && v[0] == recInbound {
			if s.inQoS2 == nil {
				s.inQoS2 = make(map[uint16]uint8)
			}
			s.inQoS2[uint16(seq)] = in2Received
			return nil
		}
		om, err := decodeOut(v)
		if err == nil && om.body != nil {
			err = b.refLoadedBody(om, bodies)
		}
		if err != nil {
			b.log.Warn("dropping corrupt message record", "client", id, "err", err)
			b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Messages, Key: key}}, nil)
			return nil
		}
		om.seq, om.stored = seq, true
		s.seq = max(s.seq, seq)
		if om.state == outQueued || om.pid == 0 {
			om.state = outQueued
			s.queue = append(s.queue, om)
			s.qbytes += om.size()
			b.stats.queued.Add(1)
			return nil
		}
		if s.inflight == nil {
			s.inflight = make(map[uint16]*outMsg)
		}
		s.inflight[om.pid] = om
		return nil
	})
	if err != nil {
		return err
	}
	b.dropOrphanBodies(bodies)
	return nil
}

func (b *Broker) loadWills(sessions map[string]*session) error {
	var orphans []*will
	err := b.store.Scan(store.Wills, "", func(key string, v []byte) error {
		if b.opts.Registry != nil {
			// In a cluster the Registry holds the wills of the node's
			// previous run and has them published once, by one node.
			b.unstoreWill(key)
			return nil
		}
		w, err := decodeWill(v)
		if err != nil {
			b.log.Warn("dropping corrupt will record", "client", key, "err", err)
			b.unstoreWill(key)
			return nil
		}
		s := sessions[key]
		if s == nil {
			orphans = append(orphans, w)
			b.unstoreWill(key)
			return nil
		}
		d := time.Duration(w.deadline - time.Now().UnixNano())
		s.mu.Lock()
		w.info = s.info
		s.pendingWill = w
		s.willTimer = b.afterFunc(max(d, 0), func() { b.willDue(s, w) })
		s.mu.Unlock()
		return nil
	})
	for _, w := range orphans {
		b.publishWill(w)
	}
	return err
}
