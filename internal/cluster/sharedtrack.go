package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/nats-io/nats.go"
)

// Shared subscriptions across nodes (docs/cluster.md, "Shared
// subscriptions across nodes"). The node a message is published on picks,
// per group, the node whose turn it is (SharedTurn, shared.go); a QoS 0 copy
// for another node goes with the forwarded messages, naming the group; a
// QoS 1/2 copy goes on shmsg.<node> and is tracked here (sendShared).
//
// The sending node keeps each QoS 1/2 copy until the picked node settles
// it: its member completed it (PUBACK, or PUBREC at QoS 2), took it at QoS
// 0, or holds it in a persistent session. The publisher's PUBACK waits for
// the picked node's acceptance only, as for ordinary routing. A copy that
// is returned (the member's clean session ended with no other member on
// that node), or whose node goes away or restarts before settling it, is
// sent again to the group's next node: the "unacknowledged" messages of a
// member on a lost node go to another member.
//
// Subjects, under the prefix:
//
//	shmsg.<node>  a QoS 1/2 shared copy: a forwarded-message body
//	              naming its group and filter (wire.go, flag 6)
//	shack.<node>  for the sending node: the replying node's name, then
//	              triples of seq uvarint and a kind byte (shAccepted,
//	              shSettled, shReturned, or a failure reason code >= 0x80)
const (
	shAccepted byte = 1
	shSettled  byte = 2
	shReturned byte = 3
)

// shMaxTries bounds how often one copy is sent again before it is dropped.
const shMaxTries = 8

// sharedState is a Router's part of shared subscriptions.
type sharedState struct {
	mu   sync.Mutex
	next uint64
	pend map[uint64]*shPend
	self *nodeRoute

	acks chan shAckItem

	resent  atomic.Uint64
	dropped atomic.Uint64
}

// shPend is a QoS 1/2 shared copy this node sent and still answers for.
type shPend struct {
	route         *nodeRoute // where it was sent last
	group, filter string
	body          []byte // the message's body (wire.go), seq included
	ack           broker.Acker
	first, sent   int64
	accepted      bool
	tries         int
}

type shAckItem struct {
	to   string
	seq  uint64
	kind byte
}

// startShared subscribes to the shared-copy subjects and gives the broker
// this node's own route.
func (r *Router) startShared() error {
	sh := &r.sh
	sh.pend = make(map[uint64]*shPend)
	sh.acks = make(chan shAckItem, 4096)
	sh.self = newNodeRoute(r, r.node, r.epoch)
	for subj, h := range map[string]nats.MsgHandler{
		r.prefix + "shmsg." + r.node: r.onShared,
		r.prefix + "shack." + r.node: r.onSharedAcks,
	} {
		s, err := r.nc.Subscribe(subj, h)
		if err != nil {
			return err
		}
		s.SetPendingLimits(1<<20, 512<<20)
		r.subs = append(r.subs, s)
	}
	if err := r.startDrain(); err != nil { // drain.go
		return err
	}
	r.wg.Add(2)
	go r.sharedAckLoop()
	go r.sharedTickLoop()
	return nil
}

// sendShared sends a QoS 1/2 copy of m to node n for one member of the
// shared subscription share, and keeps it until n settles it.
func (r *Router) sendShared(n *nodeRoute, m *broker.Message, share broker.Share, ack broker.Acker) {
	now := time.Now().UnixNano()
	p := &shPend{route: n, group: share.Group, filter: share.Filter, ack: ack, first: now, sent: now}
	r.sh.mu.Lock()
	r.sh.next++
	seq := r.sh.next
	r.sh.mu.Unlock()
	// Kept: m may alias the publisher's packet.
	p.body = encodeMsg(nil, m, m.QoS, seq, r.node, now, &share, onceID{})
	r.sh.mu.Lock()
	r.sh.pend[seq] = p
	r.sh.mu.Unlock()
	r.forwarded.Add(1)
	if err := r.nc.Publish(r.prefix+"shmsg."+n.name, p.body); err != nil {
		r.sharedAnswer(seq, packet.ErrUnspecified.Value)
	}
}

// onShared takes a shared copy another node (or this one) picked this
// node for.
func (r *Router) onShared(msg *nats.Msg) {
	m, seq, sender, _, err := decodeMsg(msg.Data, time.Now().UnixNano())
	if err == nil && (m.Share == nil || seq == 0) {
		err = errWire
	}
	if err != nil {
		r.log.Warn("cluster: malformed shared copy dropped", "err", err)
		return
	}
	r.received.Add(1)
	group, filter := m.Share.Group, m.Share.Filter
	m.Share = nil
	var once atomic.Bool
	r.b.DeliverShared(m, m.QoS, group, filter, func(err error) {
		kind := shAccepted
		if err != nil {
			kind = packet.ErrUnspecified.Value
			var c packet.Code
			if errors.As(err, &c) && c.Value >= 0x80 {
				kind = c.Value
			}
		}
		r.sh.acks <- shAckItem{to: sender, seq: seq, kind: kind}
	}, func(ok bool) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		kind := shSettled
		if !ok {
			kind = shReturned
		}
		select {
		case r.sh.acks <- shAckItem{to: sender, seq: seq, kind: kind}:
		default:
			go func() { r.sh.acks <- shAckItem{to: sender, seq: seq, kind: kind} }()
		}
	})
}

// sharedAckLoop sends answers in batches, one NATS message per sender.
func (r *Router) sharedAckLoop() {
	defer r.wg.Done()
	batches := make(map[string][]byte)
	for {
		var it shAckItem
		select {
		case <-r.stop:
			return
		case it = <-r.sh.acks:
		}
		for n := 0; n < 1024; n++ {
			b := batches[it.to]
			if b == nil {
				b = appendString(make([]byte, 0, 256), r.node)
			}
			batches[it.to] = appendAck(b, it.seq, it.kind)
			select {
			case it = <-r.sh.acks:
				continue
			default:
			}
			break
		}
		for to, b := range batches {
			r.nc.Publish(r.prefix+"shack."+to, b)
			delete(batches, to)
		}
	}
}

func (r *Router) onSharedAcks(msg *nats.Msg) {
	rd := &reader{b: msg.Data}
	rd.string() // the replying node: the pending copy knows where it went
	for len(rd.b) > 0 && rd.err == nil {
		seq := rd.uvarint()
		kind := rd.byte()
		if rd.err == nil {
			r.sharedAnswer(seq, kind)
		}
	}
}

// sharedAnswer applies one answer about the copy seq.
func (r *Router) sharedAnswer(seq uint64, kind byte) {
	sh := &r.sh
	sh.mu.Lock()
	p := sh.pend[seq]
	if p == nil {
		sh.mu.Unlock()
		return
	}
	var ack broker.Acker
	var resend bool
	switch kind {
	case shAccepted:
		p.accepted = true
		ack, p.ack = p.ack, nil
	case shSettled:
		delete(sh.pend, seq)
		ack, p.ack = p.ack, nil
	case shReturned:
		resend = true
	default: // refused by the picked node: the publisher hears of it
		if p.ack != nil {
			delete(sh.pend, seq)
			ack, p.ack = p.ack, nil
		} else {
			resend = true
		}
	}
	sh.mu.Unlock()
	if ack != nil {
		if kind >= 0x80 {
			ack.Done(packet.Code{Value: kind})
		} else {
			ack.Done(nil)
		}
	}
	if resend {
		r.sharedResend(seq, p)
	}
}

// sharedResend sends the copy seq to the group's next node, or drops it
// (releasing its publisher) when no node has members any more or it was
// sent shMaxTries times.
func (r *Router) sharedResend(seq uint64, p *shPend) {
	nr := r.nextShared(p.group, p.filter, p.route)
	sh := &r.sh
	sh.mu.Lock()
	if sh.pend[seq] != p {
		sh.mu.Unlock()
		return
	}
	p.tries++
	if nr == nil || p.tries > shMaxTries {
		delete(sh.pend, seq)
		ack := p.ack
		p.ack = nil
		sh.mu.Unlock()
		sh.dropped.Add(1)
		r.log.Warn("cluster: shared copy dropped: no member left to take it", "group", p.group, "filter", p.filter, "tries", p.tries)
		if ack != nil {
			ack.Done(nil) // no subscriber left: as for a message nobody matches
		}
		return
	}
	p.route, p.sent = nr, time.Now().UnixNano()
	sh.mu.Unlock()
	sh.resent.Add(1)
	r.nc.Publish(r.prefix+"shmsg."+nr.name, p.body)
}

// nextShared is the node to send a copy for (group, filter) to again:
// the next one whose turn it is other than not (this node's own route
// when its turn comes and it has members), or nil when no node but not
// has members.
func (r *Router) nextShared(group, filter string, not *nodeRoute) *nodeRoute {
	local := r.b.HasSharedMembers(group, filter)
	r.shMu.RLock()
	n := 1
	if e, ok := r.shIdx.Get(filter, group); ok {
		n += len(e.routes)
	}
	r.shMu.RUnlock()
	for range n + 1 {
		var nr *nodeRoute
		if rt := r.SharedTurn(group, filter, local); rt != nil {
			nr = rt.(*nodeRoute)
		} else if local {
			nr = r.sh.self
		}
		if nr != nil && nr != not {
			return nr
		}
	}
	return nil
}

// sharedTickLoop sends again the copies whose node went away or restarted,
// and those nobody accepted within node_timeout; it fails the publisher's
// wait after ack_timeout, as for ordinary routing.
func (r *Router) sharedTickLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.heartbeatEvery())
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.sharedCheck(time.Now().UnixNano())
	}
}

func (r *Router) sharedCheck(now int64) {
	live := make(map[*nodeRoute]bool)
	r.mu.Lock()
	for _, p := range r.peers {
		live[p.route] = true
	}
	r.mu.Unlock()
	live[r.sh.self] = true
	type item struct {
		seq uint64
		p   *shPend
	}
	var again []item
	var late []broker.Acker
	sh := &r.sh
	sh.mu.Lock()
	for seq, p := range sh.pend {
		if p.ack != nil && now-p.first > int64(r.ackTO) {
			late = append(late, p.ack)
			p.ack = nil
			if !p.accepted {
				delete(sh.pend, seq) // the publisher sends it again
				continue
			}
		}
		switch {
		case !live[p.route]:
			again = append(again, item{seq, p})
		case !p.accepted && now-p.sent > int64(r.nodeTO):
			again = append(again, item{seq, p})
		}
	}
	sh.mu.Unlock()
	for _, a := range late {
		a.Done(ErrRemoteTimeout)
	}
	for _, it := range again {
		r.sharedResend(it.seq, it.p)
	}
}

// closeShared releases the publishers still waiting.
func (r *Router) closeShared() {
	sh := &r.sh
	sh.mu.Lock()
	pend := sh.pend
	sh.pend = map[uint64]*shPend{}
	sh.mu.Unlock()
	for _, p := range pend {
		if p.ack != nil {
			p.ack.Done(context.Canceled)
		}
	}
}
