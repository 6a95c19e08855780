package cluster

import (
	"sync"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// nodeRoute is the broker's remote route to one other node: the broker
// calls it once per message however many of the node's filters match.
type nodeRoute struct {
	r    *Router
	name string
	subj string
	pool sync.Pool

	mu   sync.Mutex
	next uint64
	pend map[uint64]waiter
	gone bool
}

type waiter struct {
	ack  broker.Acker
	sent int64
}

var _ broker.AckRemoteRoute = (*nodeRoute)(nil)

func newNodeRoute(r *Router, name string) *nodeRoute {
	return &nodeRoute{r: r, name: name, subj: r.prefix + "msg." + name, pend: make(map[uint64]waiter)}
}

// Deliver forwards m at QoS 0, or a QoS 1/2 message whose publisher does
// not wait (nothing to hold).
func (n *nodeRoute) Deliver(m *broker.Message, qos byte) { n.send(m, qos, 0) }

// DeliverAck forwards a QoS 1/2 message and holds ack until the node
// accepts it, fails it, is gone, or ack_timeout passes.
func (n *nodeRoute) DeliverAck(m *broker.Message, qos byte, ack broker.Acker) {
	n.mu.Lock()
	if n.gone {
		n.mu.Unlock()
		ack.Done(nil) // the node left: nobody there to wait for
		return
	}
	n.next++
	seq := n.next
	now := time.Now().UnixNano()
	n.pend[seq] = waiter{ack: ack, sent: now}
	n.mu.Unlock()
	n.send(m, qos, seq)
}

func (n *nodeRoute) send(m *broker.Message, qos byte, seq uint64) {
	bp, _ := n.pool.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := encodeMsg((*bp)[:0], m, qos, seq, n.r.node, time.Now().UnixNano())
	err := n.r.nc.Publish(n.subj, b)
	if cap(b) <= 64<<10 {
		*bp = b
		n.pool.Put(bp)
	}
	n.r.forwarded.Add(1)
	if err != nil && seq != 0 {
		n.acked(seq, packet.ErrUnspecified.Value)
	}
}

// acked completes the wait for seq.
func (n *nodeRoute) acked(seq uint64, code byte) {
	n.mu.Lock()
	w, ok := n.pend[seq]
	delete(n.pend, seq)
	n.mu.Unlock()
	if !ok {
		return
	}
	if code != 0 {
		w.ack.Done(packet.Code{Value: code})
		return
	}
	w.ack.Done(nil)
}

// timeout fails the waits of messages sent before deadline.
func (n *nodeRoute) timeout(deadline int64) {
	var late []waiter
	n.mu.Lock()
	for seq, w := range n.pend {
		if w.sent < deadline {
			late = append(late, w)
			delete(n.pend, seq)
		}
	}
	n.mu.Unlock()
	for _, w := range late {
		w.ack.Done(ErrRemoteTimeout)
	}
}

// release ends every wait: the node is gone.
func (n *nodeRoute) release() {
	n.mu.Lock()
	n.gone = true
	pend := n.pend
	n.pend = make(map[uint64]waiter)
	n.mu.Unlock()
	for _, w := range pend {
		w.ack.Done(nil)
	}
}
