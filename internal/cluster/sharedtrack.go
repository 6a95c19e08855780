package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// ErrSharedDropped fails the publish of a QoS 1/2 message whose shared
// copy was sent shMaxTries times and returned each time before any node
// accepted it: no member took it, so it is not acknowledged as delivered.
var ErrSharedDropped = fmt.Errorf("%w: shared subscription copy returned by every node it was sent to (%d tries)",
	packet.ErrUnspecified, shMaxTries)

// Reasons a shared copy is dropped (Stats.SharedDropped).
const (
	shDropNoMember = "no_member" // no node has members of its group any more
	shDropMaxTries = "max_tries" // sent shMaxTries times, returned each time
)

// sharedState is a Router's part of shared subscriptions.
type sharedState struct {
	// mu guards next and pend.
	mu   sync.Mutex
	next uint64
	pend map[uint64]*shPend
	self *nodeRoute

	// ackMu guards ackQ: answers to send, queued without ever blocking
	// the broker's callbacks (they run under a session's lock); ackWake
	// tells sharedAckLoop there are some.
	ackMu   sync.Mutex
	ackQ    []shAckItem
	ackWake chan struct{}

	resent         atomic.Uint64
	droppedNoMatch atomic.Uint64 // shDropNoMember
	droppedTries   atomic.Uint64 // shDropMaxTries
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
	sh.ackWake = make(chan struct{}, 1)
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
	a := &shAnswers{r: r, to: sender, seq: seq, during: true}
	r.b.DeliverShared(m, m.QoS, group, filter, a.accepted, a.settled)
	a.delivered()
}

// shAnswers are the answers about one shared copy this node received.
// Those given while DeliverShared runs are held until it returns: a copy
// returned then (no member here, or the member may not receive it) was
// taken by nobody, and its acceptance, which DeliverShared gives too, is
// left out, so that the publisher's PUBACK keeps waiting for a node that
// really takes the copy.
type shAnswers struct {
	r      *Router
	to     string
	seq    uint64
	settle atomic.Bool // settled or returned once only
	// mu guards during and held.
	mu     sync.Mutex
	during bool // DeliverShared has not returned yet
	held   []byte
}

func (a *shAnswers) accepted(err error) {
	kind := shAccepted
	if err != nil {
		kind = packet.ErrUnspecified.Value
		var c packet.Code
		if errors.As(err, &c) && c.Value >= 0x80 {
			kind = c.Value
		}
	}
	a.answer(kind)
}

func (a *shAnswers) settled(ok bool) {
	if !a.settle.CompareAndSwap(false, true) {
		return
	}
	kind := shSettled
	if !ok {
		kind = shReturned
	}
	a.answer(kind)
}

func (a *shAnswers) answer(kind byte) {
	a.mu.Lock()
	if a.during {
		a.held = append(a.held, kind)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.r.queueSharedAck(shAckItem{to: a.to, seq: a.seq, kind: kind})
}

// delivered sends the answers held while DeliverShared ran.
func (a *shAnswers) delivered() {
	a.mu.Lock()
	held := a.held
	a.held, a.during = nil, false
	a.mu.Unlock()
	returned := slices.Contains(held, shReturned)
	for _, kind := range held {
		if kind == shAccepted && returned {
			continue
		}
		a.r.queueSharedAck(shAckItem{to: a.to, seq: a.seq, kind: kind})
	}
}

// queueSharedAck queues an answer for sharedAckLoop; it never blocks, and
// once the router has stopped the answer is dropped (the sender sees this
// node gone and sends its copies elsewhere).
func (r *Router) queueSharedAck(it shAckItem) {
	select {
	case <-r.stop:
		return
	default:
	}
	sh := &r.sh
	sh.ackMu.Lock()
	sh.ackQ = append(sh.ackQ, it)
	sh.ackMu.Unlock()
	select {
	case sh.ackWake <- struct{}{}:
	default:
	}
}

// shAckBatch bounds the answers in one NATS message.
const shAckBatch = 1024

// sharedAckLoop sends answers in batches, one NATS message per sender for
// up to shAckBatch of what accumulated while the previous ones were sent.
func (r *Router) sharedAckLoop() {
	defer r.wg.Done()
	sh := &r.sh
	batches := make(map[string][]byte)
	counts := make(map[string]int)
	var q []shAckItem
	for {
		select {
		case <-r.stop:
			return
		case <-sh.ackWake:
		}
		sh.ackMu.Lock()
		q, sh.ackQ = sh.ackQ, q[:0]
		sh.ackMu.Unlock()
		for _, it := range q {
			b := batches[it.to]
			if b == nil {
				b = appendString(make([]byte, 0, 256), r.node)
			}
			batches[it.to] = appendAck(b, it.seq, it.kind)
			if counts[it.to]++; counts[it.to] == shAckBatch {
				r.nc.Publish(r.prefix+"shack."+it.to, batches[it.to])
				delete(batches, it.to)
				delete(counts, it.to)
			}
		}
		clear(q)
		for to, b := range batches {
			r.nc.Publish(r.prefix+"shack."+to, b)
			delete(batches, to)
			delete(counts, to)
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
		reason, err := shDropNoMember, error(nil) // no subscriber left: as for a message nobody matches
		if nr == nil {
			sh.droppedNoMatch.Add(1)
		} else {
			reason, err = shDropMaxTries, ErrSharedDropped
			sh.droppedTries.Add(1)
		}
		r.log.Warn("cluster: shared copy dropped", "reason", reason, "group", p.group, "filter", p.filter,
			"tries", p.tries, "publisher_waiting", ack != nil)
		if ack != nil {
			ack.Done(err)
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

// sharedStats fills st's shared-copy counters.
func (r *Router) sharedStats(st *Stats) {
	sh := &r.sh
	sh.mu.Lock()
	st.SharedPending = len(sh.pend)
	sh.mu.Unlock()
	st.SharedResent = sh.resent.Load()
	st.SharedDropped = map[string]uint64{shDropNoMember: sh.droppedNoMatch.Load(), shDropMaxTries: sh.droppedTries.Load()}
}
