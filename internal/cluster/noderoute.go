package cluster

import (
	"encoding/binary"
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

	bmu       sync.Mutex
	buf       []byte   // frames waiting for the flusher
	seqs      []uint64 // their sequences (acknowledged ones), to fail them if publishing fails
	queued    bool     // in the flusher's queue
	spare     []byte   // the flusher's: the previous batch's buffer, reused
	spareSeqs []uint64

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
// (ack is then done: nobody there to wait for).
func (n *nodeRoute) wait(ack broker.Acker) (uint64, bool) {
	n.mu.Lock()
	if n.gone {
		n.mu.Unlock()
		ack.Done(nil)
		return 0, false
	}
	n.next++
	seq := n.next
	n.pend[seq] = waiter{ack: ack, sent: time.Now().UnixNano()}
	n.mu.Unlock()
	return seq, true
}

// send appends m's frame to the batch for the node and wakes the flusher
// if the batch was empty. Frames leave in the order they were appended.
func (n *nodeRoute) send(m *broker.Message, qos byte, seq uint64, share *broker.Share) {
	n.bmu.Lock()
	start := len(n.buf)
	n.buf = append(n.buf, 0, 0, 0, 0)
	n.buf = encodeMsg(n.buf, m, qos, seq, n.r.node, time.Now().UnixNano(), share)
	binary.LittleEndian.PutUint32(n.buf[start:], uint32(len(n.buf)-start-4))
	n.seqs = appendSeq(n.seqs, seq)
	wake := !n.queued
	n.queued = true
	n.bmu.Unlock()
	n.r.forwarded.Add(1)
	if wake {
		select {
		case n.r.flushq <- n:
		case <-n.r.stop:
		}
	}
}

func appendSeq(s []uint64, seq uint64) []uint64 {
	if seq == 0 {
		return s
	}
	return append(s, seq)
}

// maxBatch bounds one NATS message of frames.
const maxBatch = 1 << 20

// flush publishes what the batch holds, in NATS messages of at most
// maxBatch bytes (a bigger frame goes alone). Only the flusher calls it.
func (n *nodeRoute) flush() {
	n.bmu.Lock()
	b, seqs := n.buf, n.seqs
	n.buf, n.seqs = n.spare[:0], n.spareSeqs[:0]
	n.queued = false
	n.bmu.Unlock()
	var err error
	for rest := b; len(rest) > 0 && err == nil; {
		end := 0
		for end < len(rest) {
			l := 4 + int(binary.LittleEndian.Uint32(rest[end:]))
			if end > 0 && end+l > maxBatch {
				break
			}
			end += l
		}
		err = n.r.nc.Publish(n.subj, rest[:end])
		rest = rest[end:]
	}
	if err != nil {
		for _, seq := range seqs {
			n.acked(seq, packet.ErrUnspecified.Value)
		}
	}
	if cap(b) > 4*maxBatch {
		b = nil // a burst's buffer is not kept
	}
	n.spare, n.spareSeqs = b[:0], seqs[:0]
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
