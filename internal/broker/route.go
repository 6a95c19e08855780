package broker

import (
	"context"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/culexmq/culex/internal/netpoll"
)

// target is one session a message goes to in a routing pass, with the
// subscriptions of that session that matched merged [MQTT-3.3.4-3..5].
type target struct {
	s      *session
	qos    byte
	rap    bool
	ids    []uint32
	id0    uint32 // the first subscription identifier, kept without allocating
	group  string // shared subscription, when delivered through one
	filter string
	// alt and nalt are the members of the shared subscription in the
	// order they are tried (scratch.alts), when an Authorizer may deny
	// one of them the message; nalt is 0 otherwise.
	alt, nalt int
}

// cachedHeader is a PUBLISH header shared by every subscriber of a pass that
// gets the same wire form (QoS 0, no per-subscriber properties).
type cachedHeader struct {
	v      packet.Version
	retain bool
	hdr    []byte
}

// scratch is the reusable state of one routing pass.
type scratch struct {
	targets []target
	idx     map[*session]int
	alts    []topic.Entry[*session, subOpts]
	remotes []remoteTarget
	// seen are the shared subscriptions of the local pass and sremotes
	// the shared deliveries forwarded to other nodes (SharedRouter).
	seen     []Share
	sremotes []sharedRemote
	// sr is the SharedRouter of the pass and remoteShared the callback
	// of its MatchShared (addRemoteShared).
	sr           SharedRouter
	remoteShared func(group, filter string)
	hdrs         []cachedHeader
	arena        []byte // headers of this pass; never reused, as queues alias it
	// arenaHint sizes the arena when the first header that cannot be
	// shared is encoded.
	arenaHint int
	now       int64
	// flush is connections this pass hands to the flush queue, in
	// batches (netpoll.Batch).
	flush netpoll.Batch
	// room is the first congested route a QoS 0 copy went to
	// (CongestedRoute): what route returns, for the publisher to wait on.
	room <-chan struct{}
}

func (sc *scratch) pushFlush() { sc.flush.Push() }

type sharedRemote struct {
	r     SharedRoute
	share Share
}

type remoteTarget struct {
	r   RemoteRoute
	qos byte
}

var scratches = sync.Pool{New: func() any {
	sc := &scratch{idx: make(map[*session]int)}
	sc.remoteShared = sc.addRemoteShared // made once: a closure per pass would be allocated
	return sc
}}

// addRemoteShared adds another node's shared subscription that matched,
// unless the local pass saw it.
func (sc *scratch) addRemoteShared(group, filter string) {
	for _, x := range sc.seen {
		if x.Group == group && x.Filter == filter {
			return
		}
	}
	if r := sc.sr.SharedTurn(group, filter, false); r != nil {
		sc.sremotes = append(sc.sremotes, sharedRemote{r, Share{group, filter}})
	}
}

func (sc *scratch) reset() {
	sc.pushFlush()
	sc.clearPass()
	sc.room = nil
}

// clearPass readies sc for the next pass, keeping the connections it
// collected for the flush queue.
func (sc *scratch) clearPass() {
	clear(sc.targets)
	sc.targets = sc.targets[:0]
	clear(sc.idx)
	clear(sc.alts)
	sc.alts = sc.alts[:0]
	clear(sc.remotes)
	sc.remotes = sc.remotes[:0]
	clear(sc.seen)
	sc.seen = sc.seen[:0]
	clear(sc.sremotes)
	sc.sremotes = sc.sremotes[:0]
	sc.sr = nil
	clear(sc.hdrs)
	sc.hdrs = sc.hdrs[:0]
	sc.arena, sc.arenaHint = nil, 0
}

func (sc *scratch) header(v packet.Version, retain bool) []byte {
	for _, h := range sc.hdrs {
		if h.v == v && h.retain == retain {
			return h.hdr
		}
	}
	return nil
}

func (sc *scratch) setHeader(v packet.Version, retain bool, hdr []byte) {
	sc.hdrs = append(sc.hdrs, cachedHeader{v, retain, hdr})
}

// add merges one matching subscription of s: one copy per session at the
// highest granted QoS with every subscription identifier.
func (sc *scratch) add(s *session, o subOpts) {
	if i, ok := sc.idx[s]; ok {
		t := &sc.targets[i]
		t.qos = max(t.qos, o.QoS)
		t.rap = t.rap || o.RAP
		if o.ID != 0 {
			if t.id0 == 0 {
				t.id0 = o.ID
			} else {
				if t.ids == nil {
					t.ids = []uint32{t.id0}
				}
				t.ids = append(t.ids, o.ID)
			}
		}
		return
	}
	sc.idx[s] = len(sc.targets)
	sc.targets = append(sc.targets, target{s: s, qos: o.QoS, rap: o.RAP, id0: o.ID})
}

// route delivers m to every matching subscription, shared subscription and
// remote route, storing it first when retained. w, if not nil, waits for
// every store write the pass makes.
//
// It returns the channel of a congested route a QoS 0 copy went to
// (CongestedRoute; nil: none), for a publishing client to wait on.
func (b *Broker) route(m *Message, w *storeWait) <-chan struct{} {
	sc := scratches.Get().(*scratch)
	b.routeIn(sc, m, w, time.Now().UnixNano())
	room := sc.room
	sc.reset()
	scratches.Put(sc)
	return room
}

// routeIn is route's pass with sc and the clock read as now; it leaves
// sc ready for the next pass but for the connections collected for the
// flush queue.
func (b *Broker) routeIn(sc *scratch, m *Message, w *storeWait, now int64) {
	if m.expired(now) {
		b.drop("", m, DropExpired)
		return
	}
	if b.cstore != nil {
		b.storeInLog(m, w)
	}
	if m.Share != nil {
		b.routeShare(m, now, w)
		return
	}
	if m.Retain && !m.Forwarded {
		b.setRetained(m, w)
	}
	sc.now = now
	b.subs.Match(m.Topic, func(_ string, s *session, o subOpts) {
		if o.NoLocal && m.Origin != "" && s.id == m.Origin {
			return // [MQTT-3.8.3-3]
		}
		sc.add(s, o)
	})
	// In a cluster the publisher's node picks the member of each shared
	// subscription, on any node: a forwarded message skips them here.
	var sr SharedRouter
	if p := b.sharedRT.Load(); p != nil && !m.Local {
		sr = p.r
	}
	if !m.Forwarded {
		b.shared.MatchTurn(m.Topic, func(group, filter string, members []topic.Entry[*session, subOpts], turn uint64) {
			if sr != nil {
				sc.seen = append(sc.seen, Share{group, filter})
				if r := sr.SharedTurn(group, filter, true); r != nil {
					sc.sremotes = append(sc.sremotes, sharedRemote{r, Share{group, filter}})
					return
				}
			}
			e := pickMember(members, turn)
			t := target{s: e.Sub, qos: e.Value.QoS, id0: e.Value.ID, group: group, filter: filter}
			if b.opts.Authorizer != nil && len(members) > 1 {
				// The member may be denied this message (a deny rule narrower
				// than the group's filter); the others are tried after the
				// index's lock is released, as checking takes session.mu.
				t.alt = len(sc.alts)
				sc.alts = appendMembers(sc.alts, members, turn)
				t.nalt = len(sc.alts) - t.alt
			}
			sc.targets = append(sc.targets, t)
		})
	}
	if sr != nil {
		sc.sr = sr
		sr.MatchShared(m.Topic, sc.remoteShared)
	}
	if !m.Local {
		b.remote.Match(m.Topic, func(_ string, r RemoteRoute, qos byte) {
			for i := range sc.remotes {
				if sc.remotes[i].r == r {
					sc.remotes[i].qos = max(sc.remotes[i].qos, qos)
					return
				}
			}
			sc.remotes = append(sc.remotes, remoteTarget{r, qos})
		})
	}
	if n := len(sc.targets); n > 1 {
		sc.arenaHint = min(n*(len(m.Topic)+24), 16<<10)
	}
	for i := range sc.targets {
		if t := &sc.targets[i]; t.nalt > 0 {
			b.deliverShared(t, m, sc, w)
		} else {
			b.deliverTarget(t, m, sc, w)
		}
	}
	for _, rt := range sc.remotes {
		q := min(m.QoS, rt.qos)
		if ar, ok := rt.r.(AckRemoteRoute); ok && q > 0 && w != nil {
			w.n.Add(1)
			ar.DeliverAck(m, q, w)
			continue
		}
		rt.r.Deliver(m, q)
		if cr, ok := rt.r.(CongestedRoute); ok && q == 0 && sc.room == nil {
			sc.room = cr.Congested()
		}
	}
	for _, x := range sc.sremotes {
		if sendShared(x.r, m, x.share, w) {
			continue
		}
		if cr, ok := x.r.(CongestedRoute); ok && sc.room == nil {
			sc.room = cr.Congested()
		}
	}
	sc.clearPass()
}

// routeShare delivers a message another node forwarded for the shared
// subscription m.Share to one of its members here, and to nobody else.
// With no member left (it unsubscribed meanwhile) the message is dropped,
// counted as not authorized for want of a better reason.
func (b *Broker) routeShare(m *Message, now int64, w *storeWait) {
	e, ok := b.shared.Next(m.Share.Group, m.Share.Filter)
	if !ok {
		b.drop("", m, DropNotAuthorized)
		return
	}
	sc := scratches.Get().(*scratch)
	sc.now = now
	t := target{s: e.Sub, qos: e.Value.QoS, id0: e.Value.ID, group: m.Share.Group, filter: m.Share.Filter}
	b.deliverTarget(&t, m, sc, w)
	sc.reset()
	scratches.Put(sc)
}

// SetSharedRouter makes the cluster pick the member of each shared
// subscription among every node's members. Call it before Start.
func (b *Broker) SetSharedRouter(sr SharedRouter) { b.sharedRT.Store(&sharedRouterBox{sr}) }

// sharedRouterBox holds the SharedRouter in an atomic pointer: publishes
// read it while a cluster test (or a late start) sets it.
type sharedRouterBox struct{ r SharedRouter }

// pickMember takes the member whose turn it is, skipping offline members
// while an online one exists.
func pickMember(members []topic.Entry[*session, subOpts], turn uint64) topic.Entry[*session, subOpts] {
	n := uint64(len(members))
	for k := uint64(0); k < n; k++ {
		e := members[(turn+k)%n]
		if e.Sub.online.Load() {
			return e
		}
	}
	return members[turn%n]
}

// appendMembers appends members in the order pickMember prefers them: the
// online ones from turn on, then the offline ones.
func appendMembers(dst, members []topic.Entry[*session, subOpts], turn uint64) []topic.Entry[*session, subOpts] {
	n := uint64(len(members))
	for _, online := range [2]bool{true, false} {
		for k := uint64(0); k < n; k++ {
			if e := members[(turn+k)%n]; e.Sub.online.Load() == online {
				dst = append(dst, e)
			}
		}
	}
	return dst
}

// deliverShared delivers m to the first member of t's shared subscription
// that may receive it and is still there; only when none may is it
// dropped.
func (b *Broker) deliverShared(t *target, m *Message, sc *scratch, w *storeWait) {
	first := sc.alts[t.alt].Sub
	if why, ok := b.deliverAmong(t, m, sc, w, sc.alts[t.alt:t.alt+t.nalt], nil); !ok && !b.shareElsewhere(Share{t.group, t.filter}, m, w, why) {
		b.drop(first.id, m, why)
	}
}

// deliverTarget delivers one copy of m to t's session, or drops it as not
// authorized when the session's client may not receive it. A shared
// subscription's member whose session ended after it was picked (its end
// takes it out of the group after marking it gone) hands the copy to
// another member, online ones first: a member leaving loses nothing sent
// its way.
func (b *Broker) deliverTarget(t *target, m *Message, sc *scratch, w *storeWait) {
	switch b.tryDeliver(t, m, sc, w) {
	case denied:
		b.drop(t.s.id, m, DropNotAuthorized)
	case ended:
		if t.group == "" {
			return // unsubscribed by its end: as if it came after
		}
		gone := t.s
		members := appendMembers(nil, b.shared.Members(t.group, t.filter), 0)
		if why, ok := b.deliverAmong(t, m, sc, w, members, gone); !ok && !b.shareElsewhere(Share{t.group, t.filter}, m, w, why) {
			b.drop(gone.id, m, why)
		}
	}
}

// shareElsewhere hands m to a member of the shared subscription share on
// another node, in a cluster, when every member here ended before taking
// it (why is DropInflight), and reports whether it did. Only a message
// published here is: a copy another node sent is settled false by the
// drop, and that node picks again.
func (b *Broker) shareElsewhere(share Share, m *Message, w *storeWait, why DropReason) bool {
	p := b.sharedRT.Load()
	if p == nil || why != DropInflight || m.Forwarded || m.Local {
		return false
	}
	r := p.r.SharedTurn(share.Group, share.Filter, false)
	if r == nil {
		return false
	}
	sendShared(r, m, share, w)
	return true
}

// sendShared hands m to r for share. A QoS 1/2 copy's acceptance is
// awaited in w when there is one: sendShared then reports true.
func sendShared(r SharedRoute, m *Message, share Share, w *storeWait) bool {
	if m.QoS > 0 && w != nil {
		w.n.Add(1)
		r.DeliverShared(m, share, w)
		return true
	}
	r.DeliverShared(m, share, nil)
	return false
}

// deliverAmong delivers m to the first of members, skip aside, that may
// receive it and is still there, setting t to it. With none, it returns
// why m is to be dropped: not authorized when a member was denied it, else
// an in-flight loss (every member ended meanwhile).
func (b *Broker) deliverAmong(t *target, m *Message, sc *scratch, w *storeWait, members []topic.Entry[*session, subOpts], skip *session) (DropReason, bool) {
	why := DropInflight
	for _, e := range members {
		if e.Sub == skip {
			continue
		}
		t.s, t.qos, t.id0 = e.Sub, e.Value.QoS, e.Value.ID
		switch b.tryDeliver(t, m, sc, w) {
		case delivered:
			return 0, true
		case denied:
			why = DropNotAuthorized
		}
	}
	return why, false
}

// delivery is what tryDeliver did with a copy.
type delivery uint8

const (
	delivered delivery = iota
	denied             // the Authorizer denies the session's client the message
	ended              // the session ended after the subscription matched
)

// tryDeliver delivers one copy of m to t's session unless the Authorizer
// denies its client the message or the session has ended: delivered QoS
// is the lower of the message's and the subscription's [MQTT-3.8.4-8]; the
// RETAIN flag is kept only for retain-as-published subscriptions
// [MQTT-3.3.1-12,13].
func (b *Broker) tryDeliver(t *target, m *Message, sc *scratch, w *storeWait) delivery {
	om := outMsg{msg: m, qos: min(m.QoS, t.qos), retain: m.Retain && t.rap, group: t.group, filter: t.filter}
	if t.ids != nil {
		om.subIDs = t.ids
	} else if t.id0 != 0 {
		om.subIDs = []uint32{t.id0}
	}
	s := t.s
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return ended
	}
	if az := b.opts.Authorizer; az != nil && s.info != nil && az.CanReceive(s.info, m) != nil {
		s.mu.Unlock()
		return denied
	}
	if b.cstore != nil && s.persistent && b.viaLogLocked(s, &om, w) {
		s.mu.Unlock()
		return delivered
	}
	s.deliverLocked(om, sc, w, sc.now)
	s.mu.Unlock()
	return delivered
}

// SubscribeRemote adds a remote subscription: messages matching filter are
// handed to r at up to qos. It implements Router.
func (b *Broker) SubscribeRemote(filter string, qos byte, r RemoteRoute) error {
	if err := topic.ValidFilter(filter, b.cfg.MaxTopicLevels); err != nil {
		return err
	}
	if _, _, ok, _ := topic.ParseShared(filter); ok {
		return packet.ErrSharedSubscriptionsNotSupported
	}
	b.remote.Subscribe(filter, r, min(qos, 2))
	return nil
}

// Done releases the count an AckRemoteRoute was given: *storeWait is the
// Acker of DeliverAck.
func (w *storeWait) Done(err error) { w.done(err) }

// AckBatch completes deferred acknowledgements together, as a cluster
// node does with one acknowledgement message of another node: the PUBACKs
// and PUBRECs they release are written by End, on the calling goroutine,
// one write per publisher, rather than each handed to the flush queue.
type AckBatch struct{ flush netpoll.Batch }

// Done completes ack (an Acker of DeliverAck or DeliverShared) with err.
func (a *AckBatch) Done(ack Acker, err error) {
	if w, ok := ack.(*storeWait); ok {
		w.doneIn(err, &a.flush)
		return
	}
	ack.Done(err)
}

// End writes what the acknowledgements released (netpoll.Batch.Write).
func (a *AckBatch) End() { a.flush.Write() }

// LocalFilters calls fn once for every filter this node's sessions
// subscribe to, with the highest QoS granted on it: plain filters, and
// shared subscriptions as $share/group/filter. The cluster announces them to the
// other nodes. It walks the whole index: call it for a resynchronisation,
// not per subscription.
func (b *Broker) LocalFilters(fn func(filter string, qos byte)) {
	seen := make(map[string]byte)
	b.subs.Range(func(filter string, _ *session, o subOpts) bool {
		if q, ok := seen[filter]; !ok || o.QoS > q {
			seen[filter] = o.QoS
		}
		return true
	})
	b.shared.Range(func(group, filter string, members []topic.Entry[*session, subOpts]) bool {
		full := "$share/" + group + "/" + filter
		for _, e := range members {
			if q, ok := seen[full]; !ok || e.Value.QoS > q {
				seen[full] = e.Value.QoS
			}
		}
		return true
	})
	for f, q := range seen {
		fn(f, q)
	}
}

// UnsubscribeRemote removes a remote subscription added by SubscribeRemote.
func (b *Broker) UnsubscribeRemote(filter string, r RemoteRoute) bool {
	return b.remote.Unsubscribe(filter, r)
}

// Publish injects a message (bridge, cluster, $SYS) as if a client had
// published it. done, if not nil, is called once the message is routed and
// durably queued for every matching persistent session (and stored, when
// retained).
//
// A message with AllOrNothing set is first checked against every matching
// session's queue limits (fullSession); if one has no room, nothing is
// routed (not retained, not sent to remote routes) and done gets a
// *QueueFullError naming that session, before Publish returns, so the
// caller can retry the same message later without any session getting it
// twice. Once routed, its copies are never dropped for a full queue.
func (b *Broker) Publish(ctx context.Context, m *Message, done func(error)) {
	var w *storeWait
	if done != nil {
		w = newStoreWait(done)
	} // else nobody waits: no storeWait to allocate
	b.publish(ctx, m, w, nil, 0)
}

// Wait is the state of one Batch.PublishAck, to embed in what the caller
// allocates per message anyway (no closure and no wait of its own).
type Wait struct{ w storeWait }

// Batch routes messages one after another with one routing scratch and
// one clock reading, and hands the connections they were queued on to the
// flush queue once, at End: the cluster injects each NATS message of
// forwarded messages with one. Not safe for concurrent use; End it before
// anything waits for the writes.
type Batch struct {
	b   *Broker
	sc  *scratch
	now int64
}

// Batch starts a batch; now is the clock reading its messages are routed
// at (UnixNano).
func (b *Broker) Batch(now int64) *Batch {
	return &Batch{b: b, sc: scratches.Get().(*scratch), now: now}
}

// PublishAck is Publish within the batch with ack in place of done and
// w (zero, used once) the wait it needs; a nil ack is Publish with no
// callback (w unused).
func (bt *Batch) PublishAck(ctx context.Context, m *Message, w *Wait, ack Acker) {
	var sw *storeWait
	if ack != nil {
		sw = &w.w
		sw.to = ack
		sw.n.Store(1)
	}
	bt.b.publish(ctx, m, sw, bt.sc, bt.now)
}

// End hands the batch's writes to the flush queue.
func (bt *Batch) End() {
	bt.sc.reset()
	scratches.Put(bt.sc)
	bt.sc = nil
}

// EndHere is End, but writes what is left to write on the calling
// goroutine (netpoll.Batch.Write) instead of waking the flush queue's.
func (bt *Batch) EndHere() {
	bt.sc.flush.Write()
	bt.End()
}

// publish routes m, in sc at now when sc is not nil (a Batch); w, if
// not nil, completes once it is routed and stored (its count starts at
// 1: publish releases it).
func (b *Broker) publish(ctx context.Context, m *Message, w *storeWait, sc *scratch, now int64) {
	if err := b.checkPublish(ctx, m); err != nil {
		if w != nil {
			w.done(err)
		}
		return
	}
	if sc != nil {
		b.routeIn(sc, m, w, now)
	} else {
		b.route(m, w)
	}
	if w != nil {
		w.done(nil)
	}
}

// checkPublish is why m cannot be published, or nil.
func (b *Broker) checkPublish(ctx context.Context, m *Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := topic.ValidName(m.Topic, b.cfg.MaxTopicLevels); err != nil {
		return err
	}
	if m.QoS > 2 {
		return packet.ErrQoSNotSupported
	}
	if m.Retain && !b.cfg.RetainAvailable {
		return packet.ErrRetainNotSupported
	}
	if m.AllOrNothing {
		if id := b.fullSession(m); id != "" {
			return &QueueFullError{ClientID: id}
		}
	}
	return nil
}

func callDone(done func(error), err error) {
	if done != nil {
		done(err)
	}
}
