package cluster

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// nodeRoute is the broker's remote route to one other node: the broker
// calls it once per message however many of the node's filters match.
// Each route has its own flusher goroutine, so a node whose route blocks
// stalls only what is sent to it.
type nodeRoute struct {
	r    *Router
	name string
	subj string

	bmu     sync.Mutex
	buf     []byte // frames waiting for the flusher
	pending int    // bytes not yet taken by NATS: buf and the batch being published
	spare   []byte // the flusher's: the previous batch's buffer, reused
	stopped bool   // released: frames are no longer taken
	wake    chan struct{}
	quit    chan struct{} // closed by release

	mu      sync.Mutex
	next    uint64   // the last sequence given
	pend    []waiter // the waits of sequences first, first+1, ... (ack nil: completed)
	head    int      // pend[head] is the wait of sequence first
	first   uint64
	waiting int // waits not completed
	gone    bool
	goneErr error // what waits get once the node is gone
	// timeouts counts the waits ack_timeout failed (metrics).
	timeouts uint64

	dropped atomic.Uint64 // QoS 0 messages dropped: over cluster.max_pending_bytes
}

type waiter struct {
	ack  broker.Acker
	sent int64
}

var _ broker.AckRemoteRoute = (*nodeRoute)(nil)

func newNodeRoute(r *Router, name string) *nodeRoute {
	n := &nodeRoute{r: r, name: name, subj: r.prefix + "msg." + name, first: 1,
		wake: make(chan struct{}, 1), quit: make(chan struct{})}
	go n.flushLoop()
	return n
}

// Deliver forwards m at QoS 0, or a QoS 1/2 message whose publisher does
// not wait (nothing to hold).
func (n *nodeRoute) Deliver(m *broker.Message, qos byte) { n.send(m, qos, 0, nil) }

// DeliverShared forwards m for the node's shared subscription share; with
// ack, as DeliverAck.
func (n *nodeRoute) DeliverShared(m *broker.Message, share broker.Share, ack broker.Acker) {
	if m.QoS > 0 {
		n.r.sendShared(n, m, share, ack) // sharedtrack.go: kept until its member completes it
		return
	}
	n.send(m, 0, 0, &share)
}

// DeliverAck forwards a QoS 1/2 message and holds ack until the node
// accepts it, fails it, is gone, or ack_timeout passes.
func (n *nodeRoute) DeliverAck(m *broker.Message, qos byte, ack broker.Acker) {
	if seq, ok := n.wait(ack); ok {
		n.send(m, qos, seq, nil)
	}
}

// wait registers ack under a new sequence; false when the node is gone
// (ack is then done as release did it).
func (n *nodeRoute) wait(ack broker.Acker) (uint64, bool) {
	n.mu.Lock()
	if n.gone {
		err := n.goneErr
		n.mu.Unlock()
		ack.Done(err)
		return 0, false
	}
	n.next++
	n.waiting++
	n.pend = append(n.pend, waiter{ack: ack, sent: time.Now().UnixNano()})
	n.mu.Unlock()
	return n.next, true
}

// send appends m's frame to the batch for the node and wakes its flusher.
// Frames leave in the order they were appended. Past
// cluster.max_pending_bytes a QoS 0 frame is dropped (counted) and a
// QoS 1/2 one fails its wait (quota exceeded; a v5 publisher gets 0x80)
// so that the publisher sends it again.
func (n *nodeRoute) send(m *broker.Message, qos byte, seq uint64, share *broker.Share) {
	n.bmu.Lock()
	if n.stopped {
		n.bmu.Unlock()
		return // gone: release ended the wait
	}
	start := len(n.buf)
	n.buf = append(n.buf, 0, 0, 0, 0)
	n.buf = encodeMsg(n.buf, m, qos, seq, n.r.node, time.Now().UnixNano(), share)
	size := len(n.buf) - start
	if n.pending+size > n.r.maxPending {
		n.buf = n.buf[:start]
		n.bmu.Unlock()
		if seq == 0 {
			n.dropped.Add(1)
			n.r.b.CountDrop(broker.DropRouteFull)
		} else {
			n.acked(seq, packet.ErrQuotaExceeded.Value)
		}
		return
	}
	binary.LittleEndian.PutUint32(n.buf[start:], uint32(size-4))
	n.pending += size
	n.bmu.Unlock()
	n.r.forwarded.Add(1)
	select {
	case n.wake <- struct{}{}:
	default: // already woken
	}
}

// flushLoop is the route's flusher: it publishes what gathered while it
// published the previous batch.
func (n *nodeRoute) flushLoop() {
	for {
		select {
		case <-n.r.stop:
			return
		case <-n.quit:
			return
		case <-n.wake:
			n.flush()
		}
	}
}

// maxBatch bounds one NATS message of frames.
const maxBatch = 1 << 20

// flush publishes what the batch holds, in NATS messages of at most
// maxBatch bytes (a bigger frame goes alone). A NATS message that fails
// fails the waits of its own frames only: the others went out, and their
// node acknowledges them. Only the flusher calls it.
func (n *nodeRoute) flush() {
	n.bmu.Lock()
	b := n.buf
	n.buf = n.spare[:0]
	n.bmu.Unlock()
	for rest := b; len(rest) > 0; {
		end := 0
		for end < len(rest) {
			l := 4 + int(binary.LittleEndian.Uint32(rest[end:]))
			if end > 0 && end+l > maxBatch {
				break
			}
			end += l
		}
		if err := n.publish(rest[:end]); err != nil {
			for f := rest[:end]; len(f) > 0; {
				l := 4 + int(binary.LittleEndian.Uint32(f))
				if seq := frameSeq(f[4:l]); seq != 0 {
					n.acked(seq, packet.ErrUnspecified.Value)
				}
				f = f[l:]
			}
		}
		n.bmu.Lock()
		n.pending -= end
		n.bmu.Unlock()
		rest = rest[end:]
	}
	if cap(b) > 4*maxBatch {
		b = nil // a burst's buffer is not kept
	}
	n.spare = b[:0]
}

// acked completes the wait for seq.
func (n *nodeRoute) acked(seq uint64, code byte) {
	n.mu.Lock()
	var ack broker.Acker
	if seq >= n.first && seq-n.first < uint64(len(n.pend)-n.head) {
		i := n.head + int(seq-n.first)
		ack, n.pend[i].ack = n.pend[i].ack, nil
		if ack != nil {
			n.waiting--
		}
		n.trimLocked(0)
	}
	n.mu.Unlock()
	if ack == nil {
		return
	}
	if code != 0 {
		ack.Done(packet.Code{Value: code})
		return
	}
	ack.Done(nil)
}

// trimLocked drops the completed waits at the head of pend, and with
// before > 0 the waits sent before it, into late; sequences are given in
// time order, so it stops at the first later one.
func (n *nodeRoute) trimLocked(before int64) (late []broker.Acker) {
	for n.head < len(n.pend) {
		w := &n.pend[n.head]
		if w.ack != nil {
			if w.sent >= before {
				break
			}
			late = append(late, w.ack)
			n.waiting--
		}
		*w = waiter{}
		n.head++
		n.first++
	}
	switch {
	case n.head == len(n.pend) && cap(n.pend) > 4096:
		n.pend, n.head = nil, 0 // a burst's array is not kept
	case n.head == len(n.pend):
		n.pend, n.head = n.pend[:0], 0
	case n.head >= 1024 && n.head >= len(n.pend)/2:
		n.pend = n.pend[:copy(n.pend, n.pend[n.head:])]
		n.head = 0
	}
	return late
}

// timeout fails the waits of messages sent before deadline.
func (n *nodeRoute) timeout(deadline int64) {
	n.mu.Lock()
	late := n.trimLocked(deadline)
	n.timeouts += uint64(len(late))
	n.mu.Unlock()
	for _, ack := range late {
		ack.Done(ErrRemoteTimeout)
	}
}

// release ends every wait with err (nil: as accepted), and the route: the
// node is gone.
func (n *nodeRoute) release(err error) {
	n.bmu.Lock()
	n.stopped, n.buf, n.pending = true, nil, 0
	n.bmu.Unlock()
	n.mu.Lock()
	if !n.gone {
		close(n.quit)
	}
	n.gone, n.goneErr = true, err
	pend := n.pend[n.head:]
	n.pend, n.head, n.first, n.waiting = nil, 0, n.next+1, 0
	n.mu.Unlock()
	for _, w := range pend {
		if w.ack != nil {
			w.ack.Done(err)
		}
	}
}

func (n *nodeRoute) publish(batch []byte) error {
	if fn := n.r.testPublish.Load(); fn != nil {
		return (*fn)(n.name, batch)
	}
	return n.r.nc.Publish(n.subj, batch)
}

// pendingBytes is what the route holds for NATS.
func (n *nodeRoute) pendingBytes() int {
	n.bmu.Lock()
	defer n.bmu.Unlock()
	return n.pending
}
