package broker

import (
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

// SharedRemoteRoute is a RemoteRoute that can also take a shared
// subscription's message for one member on its node: the cluster's route
// to a node. The broker picks, per (group, filter), between this node's
// members and the nodes that announced members, round-robin over nodes;
// when it picks a node, it calls DeliverShared, with ack (not nil) for a
// QoS 1/2 message whose acknowledgement waits, exactly as DeliverAck.
type SharedRemoteRoute interface {
	RemoteRoute
	DeliverShared(m *Message, qos byte, group, filter string, ack Acker)
}

// remoteShared is the shared subscriptions other nodes announced: one
// member per node (its route), with the highest QoS granted there.
type remoteShared struct {
	idx  atomic.Pointer[topic.SharedIndex[RemoteRoute, byte]] // made at the first use
	self atomic.Pointer[selfRoute]                            // SetSharedSelf
	next atomic.Uint64
}

type selfRoute struct{ r SharedRemoteRoute }

func (r *remoteShared) index() *topic.SharedIndex[RemoteRoute, byte] {
	if x := r.idx.Load(); x != nil {
		return x
	}
	r.idx.CompareAndSwap(nil, topic.NewSharedIndex[RemoteRoute, byte]())
	return r.idx.Load()
}

// selfRoute is this node's own route, nil outside a cluster.
func (r *remoteShared) selfRoute() SharedRemoteRoute {
	if s := r.self.Load(); s != nil {
		return s.r
	}
	return nil
}

// subscribeRemoteShared adds r as a member of the shared subscription
// (group, filter): r's node has members of it.
func (b *Broker) subscribeRemoteShared(group, filter string, qos byte, r RemoteRoute) error {
	if err := topic.ValidFilter(filter, b.cfg.MaxTopicLevels); err != nil {
		return err
	}
	if _, ok := r.(SharedRemoteRoute); !ok {
		return packet.ErrSharedSubscriptionsNotSupported
	}
	b.rshared.index().Subscribe(group, filter, r, min(qos, 2))
	return nil
}

func (b *Broker) unsubscribeRemoteShared(group, filter string, r RemoteRoute) bool {
	return b.rshared.index().Unsubscribe(group, filter, r)
}

// sharedFilter splits a "$share/group/filter" filter; ok is false for any
// other filter.
func sharedFilter(f string) (group, inner string, ok bool) {
	group, inner, ok, _ = topic.ParseShared(f)
	return group, inner, ok
}

// routeRemoteShared runs in a routing pass after the local matching, for a
// message published on this node (not Local): for each shared
// subscription some other node has members of, it picks the node whose
// turn it is among those nodes and this one (when it has members). A
// group that spans nodes is always delivered through the picked node's
// route, this node's own included, so that a copy its member does not
// complete can be handed to a member elsewhere (SharedRemoteRoute).
func (b *Broker) routeRemoteShared(m *Message, sc *scratch, w *storeWait) {
	idx := b.rshared.idx.Load()
	if idx == nil || idx.Len() == 0 {
		return
	}
	type pick struct {
		r             SharedRemoteRoute
		qos           byte
		group, filter string
	}
	var picks []pick
	idx.MatchTurn(m.Topic, func(group, filter string, members []topic.Entry[RemoteRoute, byte], turn uint64) {
		n := len(members)
		local := -1
		for i := range sc.targets {
			if t := &sc.targets[i]; t.group == group && t.filter == filter {
				local = i
				break
			}
		}
		if local >= 0 {
			// Remove the local member's copy: the group's pick is made
			// over nodes, this one as one more.
			n++
			sc.targets = append(sc.targets[:local], sc.targets[local+1:]...)
		}
		k := int(turn % uint64(n))
		if k == len(members) {
			if r := b.rshared.selfRoute(); r != nil {
				picks = append(picks, pick{r, 2, group, filter})
			}
			return
		}
		e := members[k]
		picks = append(picks, pick{e.Sub.(SharedRemoteRoute), e.Value, group, filter})
	})
	for _, p := range picks {
		q := min(m.QoS, p.qos)
		if q > 0 && w != nil {
			w.n.Add(1)
			p.r.DeliverShared(m, q, p.group, p.filter, w)
			continue
		}
		p.r.DeliverShared(m, q, p.group, p.filter, nil)
	}
}

// SetSharedSelf gives the broker this node's own route for shared
// subscriptions that span nodes (the cluster sends itself the copies it
// picks for its own members, so that they are tracked as the others are).
// Call it before clients connect.
func (b *Broker) SetSharedSelf(r SharedRemoteRoute) { b.rshared.self.Store(&selfRoute{r}) }

// DeliverShared delivers m, sent by another node's pick (or this node's,
// through SetSharedSelf), to one member of this node's shared subscription
// (group, filter), at most at qos. accepted, if not nil, is called once
// the copy is queued (durably for a persistent session), with an error
// if it was not. settle, if not nil, is called once the copy is done
// with: true when the member completed it (PUBACK; PUBREC for QoS 2), was
// given it at QoS 0, or holds it in a persistent session; false when the
// copy was dropped (the member's clean session ended with no other member
// here, not authorized, expired...), for the sender to hand it to a member
// elsewhere. With no member here, settle(false) comes at once, after
// accepted(nil).
func (b *Broker) DeliverShared(m *Message, qos byte, group, filter string, accepted func(error), settle func(ok bool)) {
	m.QoS = min(m.QoS, qos)
	members := b.shared.Members(group, filter)
	if len(members) == 0 {
		callDone(accepted, nil)
		if settle != nil {
			settle(false)
		}
		return
	}
	// The member whose turn it is, or the next online one, as local
	// routing picks.
	e, _ := b.shared.Next(group, filter)
	for k := range members {
		if members[k].Sub == e.Sub {
			members = append(members[k:], members[:k]...)
			break
		}
	}
	for _, c := range members {
		if c.Sub.online.Load() {
			e = c
			break
		}
	}
	t := target{s: e.Sub, qos: e.Value.QoS, id0: e.Value.ID, group: group, filter: filter}
	e.Sub.mu.Lock()
	final := min(m.QoS, t.qos) == 0 || e.Sub.persistent
	e.Sub.mu.Unlock()
	done := accepted
	if settle != nil {
		if final {
			// Nothing to complete here: settled once accepted.
			done = func(err error) {
				callDone(accepted, err)
				settle(err == nil)
			}
		} else {
			m.settle = settle
		}
	}
	w := newStoreWait(done)
	sc := scratches.Get().(*scratch)
	sc.now = time.Now().UnixNano()
	b.deliverTarget(&t, m, sc, w)
	sc.reset()
	scratches.Put(sc)
	w.done(nil)
}

// settled reports a shared copy's end to the node that sent it (see
// DeliverShared); a no-op for other messages.
func (m *Message) settled(ok bool) {
	if f := m.settle; f != nil {
		f(ok)
	}
}

// NextSharedRoute returns the next node's route for the shared
// subscription (group, filter), other than not when another has members:
// the remote nodes that announced members, and this node's own route when
// it has members. It returns nil when no node has.
func (b *Broker) NextSharedRoute(group, filter string, not SharedRemoteRoute) SharedRemoteRoute {
	var cands []SharedRemoteRoute
	if idx := b.rshared.idx.Load(); idx != nil {
		for _, e := range idx.Members(group, filter) {
			cands = append(cands, e.Sub.(SharedRemoteRoute))
		}
	}
	if self := b.rshared.selfRoute(); self != nil && len(b.shared.Members(group, filter)) > 0 {
		cands = append(cands, self)
	}
	if len(cands) == 0 {
		return nil
	}
	start := int(b.rshared.next.Add(1))
	for k := range cands {
		if c := cands[(start+k)%len(cands)]; c != not {
			return c
		}
	}
	return nil
}
