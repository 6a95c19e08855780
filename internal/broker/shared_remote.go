package broker

import (
	"time"
)

// HasSharedMembers reports whether this node has members of the shared
// subscription (group, filter).
func (b *Broker) HasSharedMembers(group, filter string) bool {
	return len(b.shared.Members(group, filter)) > 0
}

// DeliverShared delivers m, sent by another node's pick (or this node's
// own, when it sends the copy again), to one member of this node's shared subscription
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
