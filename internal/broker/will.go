package broker

import (
	"bytes"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
)

// will is a connection's Will Message [MQTT-3.1.2-8].
type will struct {
	msg      *Message // Expiry unset: it counts from publication
	delay    uint32   // Will Delay Interval, seconds [MQTT-3.1.3-9]
	expiry   uint32   // Message Expiry Interval, seconds, when hasExp
	hasExp   bool
	deadline int64 // Unix nanoseconds when a pending will is due
	// info is the client's, whose rights are checked again when the will
	// fires; a will restored after a restart has its session's.
	info *ClientInfo
	// crev names the will in the cluster's Registry (PutWill); 0 when it
	// is not stored there.
	crev uint64
}

// newWill builds the will of CONNECT p, or nil.
func (c *conn) newWill(p *packet.Connect) *will {
	if !p.WillFlag {
		return nil
	}
	// Copies: the will outlives the CONNECT's body.
	m := &Message{Topic: strings.Clone(p.WillTopic), Payload: bytes.Clone(p.WillPayload), QoS: p.WillQoS,
		Retain: p.WillRetain, Origin: c.info.ClientID}
	w := &will{msg: m, info: c.info}
	if p.Version == packet.V5 {
		if p.WillProps.Present&forwardProps != 0 {
			pr := p.WillProps.Clone()
			m.Props = messageProps(&pr)
		}
		w.delay = p.WillProps.WillDelay
		w.expiry, w.hasExp = p.WillProps.MessageExpiry, p.WillProps.Has(packet.PropMessageExpiry)
	}
	return w
}

// publishWill routes a will now, as a message of its client [MQTT-3.1.2-8],
// if the client may still publish it: a right removed since CONNECT (an
// ACL reload, revoked credentials) stops it, counted as not authorized.
// A will stored in the cluster's Registry is published once the Registry
// lets this node: in the background.
func (b *Broker) publishWill(w *will) {
	if w.crev != 0 {
		b.opts.Registry.TakeWill(w.msg.Origin, w.crev, func() { b.routeWill(w) })
		return
	}
	b.routeWill(w)
}

// routeWill publishes a will that is this node's to publish.
func (b *Broker) routeWill(w *will) {
	if az := b.opts.Authorizer; az != nil && w.info != nil {
		if err := az.CanPublish(w.info, w.msg.Topic, w.msg.QoS, w.msg.Retain); err != nil {
			b.drop(w.info.ClientID, w.msg, DropNotAuthorized)
			b.log.Info("will not published: not authorized", "client_id", w.info.ClientID, "topic", w.msg.Topic)
			return
		}
	}
	m := *w.msg
	if w.hasExp {
		m.Expiry = time.Now().Add(time.Duration(w.expiry) * time.Second).UnixNano()
	}
	if max := b.cfg.MaxMessageExpiry; max > 0 && m.Expiry == 0 {
		m.Expiry = time.Now().Add(max).UnixNano()
	}
	b.route(&m, nil)
}

// delayWill holds a will for its delay, or until the session ends if that is
// sooner [MQTT-3.1.3-9]; it survives a restart for persistent sessions.
func (b *Broker) delayWill(s *session, w *will) {
	d := time.Duration(w.delay) * time.Second
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil || s.gone {
		b.dropClusterWill(w)
		return
	}
	if s.expiry != expiryNever {
		d = min(d, time.Duration(s.expiry)*time.Second)
	}
	w.deadline = time.Now().Add(d).UnixNano()
	s.pendingWill = w
	if s.persistent {
		b.apply([]store.Op{{Kind: store.Put, Bucket: store.Wills, Key: s.id, Value: encodeWill(w)}}, nil)
	}
	s.willTimer = b.afterFunc(d, func() { b.willDue(s, w) })
}

// willDue publishes a delayed will whose time has come.
func (b *Broker) willDue(s *session, w *will) {
	s.mu.Lock()
	if s.pendingWill != w {
		s.mu.Unlock()
		return
	}
	s.pendingWill, s.willTimer = nil, nil
	persistent := s.persistent
	s.mu.Unlock()
	if persistent {
		b.unstoreWill(s.id)
	}
	b.publishWill(w)
}

func (b *Broker) unstoreWill(id string) {
	b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Wills, Key: id}}, nil)
}

// disconnected releases the session of a connection that ended: the will
// is published or delayed, and the session ends or starts its expiry.
func (b *Broker) disconnected(c *conn, err error) {
	// Counted once the session is released, so that a client seen gone has
	// its will published and its expiry running.
	defer b.releaseSlot(c)
	b.stats.disconnects.Add(1)
	s := c.sess
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock() // taken over: the new connection dealt with the will
		return
	}
	s.conn = nil
	s.online.Store(false)
	w := s.connWill
	s.connWill = nil
	if c.normal {
		b.dropClusterWill(w)
		w = nil // [MQTT-3.1.2-10]
	}
	s.discAt = time.Now().Unix()
	expiry := s.expiry
	if s.persistent && expiry > 0 {
		s.saveLocked()
	}
	s.unlock() // held acknowledgements go: the queue waits for a resume now
	if expiry == 0 {
		if w != nil {
			b.publishWill(w)
		}
		if sm := b.seams.Load(); sm != nil && sm.ending != nil {
			sm.ending(s)
		}
		// Without the client id's lock: a CONNECT may resume the session
		// first (endSession leaves it to it) or find it ended (accept
		// starts anew).
		b.endSession(s, nil)
		return
	}
	if w != nil {
		if w.delay == 0 {
			b.publishWill(w)
		} else {
			if w.crev != 0 {
				// Due after its delay, wherever it is published.
				d := min(time.Duration(w.delay), time.Duration(expiry)) * time.Second
				b.putClusterWill(w, expiry, time.Now().Add(d).UnixNano())
			}
			b.delayWill(s, w)
		}
	}
	b.scheduleExpiry(s, time.Duration(expiry)*time.Second)
}

// scheduleExpiry ends s after d unless a connection resumes it first.
func (b *Broker) scheduleExpiry(s *session, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.expiry == expiryNever || s.conn != nil || s.gone {
		return
	}
	s.expTimer = b.afterFunc(d, func() { b.expire(s) })
}

// expire ends a session whose expiry interval has passed. It holds the
// client id's lock, as CONNECT's takeover does: a timer that fired as a
// CONNECT resumed the session finds it online, or (resumed and left again)
// not due yet; a CONNECT that comes while it runs finds the session ended
// and its records deleted, and starts a new one.
func (b *Broker) expire(s *session) {
	unlock := b.ids.lock(s.id)
	defer unlock()
	s.mu.Lock()
	if s.conn != nil || s.gone || time.Now().Unix() < s.discAt+int64(s.expiry) {
		s.mu.Unlock()
		return
	}
	s.expTimer = nil
	s.mu.Unlock()
	b.endSession(s, nil)
}

// endSession discards a session: subscriptions, queue and stored state go,
// a pending will is published (at the latest when the session ends
// [MQTT-3.1.3-9]), and QoS 1/2 messages it got through a shared subscription
// but did not complete are dispatched to another member of the group. A
// session a connection was attached to since its caller looked (an expiry
// or a close racing a CONNECT) is left to that connection.
func (b *Broker) endSession(s *session, pw *will) {
	s.mu.Lock()
	if s.gone || s.conn != nil {
		s.mu.Unlock()
		return
	}
	s.gone = true
	s.online.Store(false)
	subs := s.subs
	var msgs []*outMsg
	for _, om := range s.inflight {
		msgs = append(msgs, om)
	}
	msgs = append(msgs, s.queue[s.qhead:]...)
	s.b.stats.queued.Add(-int64(s.qlenLocked()))
	s.subs, s.inflight, s.queue, s.qhead, s.qbytes, s.inQoS2 = nil, nil, nil, 0, 0, nil
	if pw == nil {
		pw = s.pendingWill
	}
	s.pendingWill = nil
	wt, et := s.willTimer, s.expTimer
	s.willTimer, s.expTimer = nil, nil
	persistent, owner, claim := s.persistent, s.owner, s.claim
	s.claim = 0
	s.unlock()
	if claim != 0 {
		b.opts.Registry.Release(s.id, claim)
	}
	b.unregister(s, subs, wt, et, persistent, owner)
	if persistent {
		s.mu.Lock()
		b.unstoreSessionLocked(s)
		s.mu.Unlock()
		s.forgetRecords(msgs)
		b.unstoreWill(s.id)
	}
	if pw != nil {
		b.publishWill(pw)
	}
	b.redispatch(s, msgs)
	for _, h := range b.expHooks {
		h.OnSessionExpired(s.id)
	}
}

// unregister stops the timers of a session that ended and removes it and
// its subscriptions from the broker's map and indexes and, persistent,
// from the counts of persistent sessions.
func (b *Broker) unregister(s *session, subs map[string]subOpts, wt, et *time.Timer, persistent bool, owner string) {
	b.stopTimer(wt)
	b.stopTimer(et)
	s.mu.Lock()
	rhold := s.rhold
	s.rhold = false
	s.mu.Unlock()
	if rhold {
		b.releaseReader()
	}
	b.mu.Lock()
	if b.sessions[s.id] == s {
		delete(b.sessions, s.id)
	}
	b.mu.Unlock()
	for f := range subs {
		b.indexUnsubscribe(s, f)
	}
	if persistent {
		b.stats.persistent.Add(-1)
		b.owned.add(owner, -1)
	}
}

// redispatch hands the unfinished shared-subscription messages of an ended
// session to another member of their group (in a cluster, on another node
// when none is left here); other messages are dropped and counted. A
// message already released (PUBREL sent) was received by the client and
// is not sent again.
func (b *Broker) redispatch(s *session, msgs []*outMsg) {
	now := time.Now().UnixNano()
	for _, om := range msgs {
		if om.group == "" || om.state == outReleased {
			if om.state != outReleased {
				b.drop(s.id, om.msg, DropInflight)
			}
			continue
		}
		e, ok := b.shared.Next(om.group, om.filter)
		if !ok || e.Sub == s {
			if !b.shareElsewhere(Share{om.group, om.filter}, om.msg, nil, DropInflight) {
				b.drop(s.id, om.msg, DropInflight)
			}
			continue
		}
		t := target{s: e.Sub, qos: e.Value.QoS, id0: e.Value.ID, group: om.group, filter: om.filter}
		// Nothing will complete it at QoS 0 or in a persistent session:
		// settled once delivered, a persistent member's copy once it is
		// stored (false if that fails), as DeliverShared settles a first
		// delivery (a copy another node sent is held there until then).
		e.Sub.mu.Lock()
		final := min(om.msg.QoS, t.qos) == 0 || e.Sub.persistent
		e.Sub.mu.Unlock()
		var w *storeWait
		if final {
			m := om.msg
			w = newStoreWait(func(err error) { m.settled(err == nil) })
		}
		sc := scratches.Get().(*scratch)
		sc.now = now
		b.deliverTarget(&t, om.msg, sc, w)
		sc.reset()
		scratches.Put(sc)
		if w != nil {
			w.done(nil)
		}
	}
}

// cancelTimersLocked stops the expiry and delayed-will timers of a session
// being resumed. takeSession cancels them too; this covers a previous
// connection whose teardown scheduled them after takeSession looked.
func (s *session) cancelTimersLocked(persistent bool) {
	s.b.stopTimer(s.expTimer)
	s.expTimer = nil
	if s.pendingWill != nil {
		s.b.dropClusterWill(s.pendingWill)
		s.b.stopTimer(s.willTimer)
		s.pendingWill, s.willTimer = nil, nil
		if persistent {
			s.b.unstoreWill(s.id)
		}
	}
}
