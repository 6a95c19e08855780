package cluster

import (
	"encoding/binary"
	"runtime"
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
	r     *Router
	name  string
	epoch uint64 // the node's run this route sends to
	subj  string
	link  *routeLink // nil: batches go through NATS (link.go)

	bmu     sync.Mutex
	chunks  [][]byte // frames waiting for the flusher, in chunks (chunkSize)
	pending int      // bytes not yet taken by NATS: chunks and those being published
	free    [][]byte // emptied chunks, reused
	taken   [][]byte // the flusher's: the chunks slice it took last, reused
	stopped bool     // released: frames are no longer taken
	wake    chan struct{}
	quit    chan struct{} // closed by release
	// room is set while the route is congested (over congestedBytes), its
	// channel closed once the route is down to roomBytes (Congested).
	// moved is when the flusher last sent a chunk, or the route became
	// congested (Unix nanoseconds): a route that has not moved for
	// stallAfter holds no publishers.
	room  atomic.Pointer[roomSignal]
	moved atomic.Int64

	mu      sync.Mutex
	next    uint64   // the last sequence given
	pend    []waiter // the waits of sequences first, first+1, ... (ack nil: completed)
	head    int      // pend[head] is the wait of sequence first
	first   uint64
	waiting int // waits not completed
	// marks say which sequences were given by when (timeout): one per
	// heartbeat tick rather than a clock reading per message.
	marks   []mark
	gone    bool
	goneErr error // what waits get once the node is gone
	// timeouts counts the waits ack_timeout failed (metrics).
	timeouts uint64

	dropped atomic.Uint64 // QoS 0 messages dropped: over cluster.max_pending_bytes
}

type waiter struct {
	ack  broker.Acker
	hold *held // a message kept until the node accepts it (Message.Hold)
}

// mark records that sequences up to seq were given by at (Unix
// nanoseconds).
type mark struct {
	at  int64
	seq uint64
}

// held is a message a node keeps for another until that node accepts it
// or is known dead (Message.Hold): a wait that ack_timeout, the node's
// silence, its full route or a failed NATS publish ends is not failed but
// sent again. It shares the publisher's message (its payload), so it
// costs what its publisher holds anyway until its done.
type held struct {
	m     broker.Message
	qos   byte
	share *broker.Share
	once  onceID
	until int64 // Unix nanoseconds: past it, the wait fails as before
}

var (
	_ broker.AckRemoteRoute = (*nodeRoute)(nil)
	_ broker.CongestedRoute = (*nodeRoute)(nil)
)

type roomSignal struct{ ch chan struct{} }

// A route holds its QoS 0 publishers (broker.CongestedRoute) from an
// eighth of cluster.max_pending_bytes until it is down to a sixteenth:
// far enough below the bound that they rarely reach it (then the route
// would drop), and low enough that a node in overload does not add
// seconds of backlog to every message. A route that has sent nothing for
// stallAfter (a node that stopped reading, a link down) holds nobody: its
// QoS 0 messages are dropped at the bound as before, so that one frozen
// node does not slow every publisher whose messages it subscribes to.
func (n *nodeRoute) congestedBytes() int { return n.r.maxPending / 8 }
func (n *nodeRoute) roomBytes() int      { return n.r.maxPending / 16 }

const stallAfter = time.Second

// Congested implements broker.CongestedRoute.
func (n *nodeRoute) Congested() <-chan struct{} {
	s := n.room.Load()
	if s == nil {
		return nil
	}
	stall := int64(stallAfter)
	if d := n.r.testStallAfter.Load(); d != 0 {
		stall = d
	}
	if time.Now().UnixNano()-n.moved.Load() > stall {
		return nil
	}
	return s.ch
}

// congestLocked marks the route congested once it holds congestedBytes;
// n.bmu is held.
func (n *nodeRoute) congestLocked() {
	if n.pending >= n.congestedBytes() && n.room.Load() == nil && !n.stopped {
		// Not stalled yet, whenever it last sent (an idle route's link may
		// still be dialing).
		n.moved.Store(time.Now().UnixNano())
		n.room.Store(&roomSignal{ch: make(chan struct{})})
	}
}

// uncongestLocked releases the publishers held once the route is down to
// roomBytes, or gone (all: true); n.bmu is held.
func (n *nodeRoute) uncongestLocked(all bool) {
	if n.pending <= n.roomBytes() || all {
		if s := n.room.Swap(nil); s != nil {
			close(s.ch)
		}
	}
}

func newNodeRoute(r *Router, name string, epoch uint64) *nodeRoute {
	n := &nodeRoute{r: r, name: name, epoch: epoch, subj: r.prefix + "msg." + name, first: 1,
		wake: make(chan struct{}, 1), quit: make(chan struct{})}
	go n.flushLoop()
	return n
}

// Deliver forwards m at QoS 0, or a QoS 1/2 message whose publisher does
// not wait (nothing to hold).
func (n *nodeRoute) Deliver(m *broker.Message, qos byte) { n.send(m, qos, 0, nil, onceID{}) }

// DeliverShared forwards m for the node's shared subscription share; with
// ack, as DeliverAck.
func (n *nodeRoute) DeliverShared(m *broker.Message, share broker.Share, ack broker.Acker) {
	if m.QoS > 0 {
		n.r.sendShared(n, m, share, ack) // sharedtrack.go: kept until its member completes it
		return
	}
	n.send(m, 0, 0, &share, onceID{})
}

// DeliverAck forwards a QoS 1/2 message and holds ack until the node
// accepts it, fails it, is gone, or ack_timeout passes.
func (n *nodeRoute) DeliverAck(m *broker.Message, qos byte, ack broker.Acker) {
	n.deliverAck(m, qos, nil, ack)
}

func (n *nodeRoute) deliverAck(m *broker.Message, qos byte, share *broker.Share, ack broker.Acker) {
	var h *held
	if m.Hold > 0 && (m.Keep || m.AllOrNothing) {
		h = &held{m: *m, qos: qos, share: share, until: time.Now().Add(m.Hold).UnixNano(),
			once: onceID{epoch: n.r.epoch, id: n.r.onceSeq.Add(1)}}
	}
	n.forward(waiter{ack: ack, hold: h}, m, qos, share)
}

// forward registers w's wait and sends its message.
func (n *nodeRoute) forward(w waiter, m *broker.Message, qos byte, share *broker.Share) {
	var once onceID
	if w.hold != nil {
		once = w.hold.once
	}
	if seq, ok := n.wait(w); ok {
		n.send(m, qos, seq, share, once)
	}
}

// resend forwards a held message again, under a new sequence.
func (n *nodeRoute) resend(w waiter) {
	n.forward(w, &w.hold.m, w.hold.qos, w.hold.share)
}

// wait registers w under a new sequence; false when the node is gone
// (w is then done as release did it, or a held one kept by the router).
func (n *nodeRoute) wait(w waiter) (uint64, bool) {
	n.mu.Lock()
	if n.gone {
		err := n.goneErr
		n.mu.Unlock()
		if w.hold != nil && err != nil {
			n.r.park(n.name, n.epoch, []waiter{w})
			return 0, false
		}
		w.ack.Done(err)
		return 0, false
	}
	n.next++
	seq := n.next // read under the lock: another send may take the next one at once
	n.waiting++
	n.pend = append(n.pend, w)
	n.mu.Unlock()
	return seq, true
}

// send appends m's frame to the batch for the node and wakes its flusher.
// Frames leave in the order they were appended. Past
// cluster.max_pending_bytes a QoS 0 frame is dropped (counted) and a
// QoS 1/2 one fails its wait (quota exceeded; a v5 publisher gets 0x80)
// so that the publisher sends it again; a held one (Message.Hold) is sent
// again at ack_timeout.
func (n *nodeRoute) send(m *broker.Message, qos byte, seq uint64, share *broker.Share, once onceID) {
	var now int64
	if m.Expiry != 0 {
		now = time.Now().UnixNano()
	}
	n.bmu.Lock()
	if n.stopped {
		n.bmu.Unlock()
		return // gone: release ended the wait
	}
	c := n.chunkFor(frameBound(m, share))
	start := len(*c)
	*c = append(*c, 0, 0, 0, 0)
	*c = encodeMsg(*c, m, qos, seq, n.r.node, now, share, once)
	size := len(*c) - start
	if n.pending+size > n.r.maxPending {
		*c = (*c)[:start]
		n.congestLocked()
		n.bmu.Unlock()
		if seq == 0 {
			n.dropped.Add(1)
			n.r.b.CountDrop(broker.DropRouteFull)
		} else {
			n.unsent(seq, packet.ErrQuotaExceeded.Value)
		}
		return
	}
	binary.LittleEndian.PutUint32((*c)[start:], uint32(size-4))
	n.pending += size
	n.congestLocked()
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
			n.r.gather()
			for !n.flush() {
				// The link is down: what waits is sent once it is up
				// again, or failed when the node is gone (release).
				if !n.waitLink() {
					return
				}
			}
		}
	}
}

// maxYields bounds how many times a flusher lets the publishers append
// more frames before it publishes (gather).
const maxYields = 4

// gather lets publishers busy routing append their frames before a
// flusher takes them: it yields the processor while frames keep coming
// (at most maxYields times), so that under load a NATS message carries
// more of them, and the round trip through NATS (about fifteen goroutine
// hand-offs, and an acknowledgement message back) is paid by more
// messages. Idle, the first yield finds no other goroutine to run and no
// new frame, and the batch leaves at once.
func (r *Router) gather() { r.gatherWith(runtime.Gosched) }

// gatherWith is gather with yield in place of runtime.Gosched (tests).
func (r *Router) gatherWith(yield func()) {
	for range maxYields {
		seen := r.forwarded.Load()
		yield()
		if r.forwarded.Load() == seen {
			return
		}
	}
}

// chunkSize bounds one NATS message of frames (a bigger frame goes
// alone). Frames wait in chunks of it rather than in one growing buffer,
// so that what a route holds costs what max_pending_bytes allows, not
// twice that while a buffer grows, and is published without copying.
const chunkSize = 256 << 10

// keptChunks is how many emptied chunks a route keeps for reuse.
const keptChunks = 4

// frameBound is at least the bytes of m's frame, its length included.
func frameBound(m *broker.Message, share *broker.Share) int {
	n := 64 + len(m.Origin) + len(m.Topic) + len(m.Payload)
	if share != nil {
		n += 20 + len(share.Group) + len(share.Filter)
	}
	if p := m.Props; p != nil && p.Present != 0 {
		n += 40 + len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData)
		for _, u := range p.User {
			n += 20 + len(u.Key) + len(u.Value)
		}
	}
	return n
}

// chunkFor returns the chunk a frame of at most size bytes is appended
// to: the last one while it has room, else a new one. n.bmu is held.
func (n *nodeRoute) chunkFor(size int) *[]byte {
	if k := len(n.chunks); k > 0 && cap(n.chunks[k-1])-len(n.chunks[k-1]) >= size {
		return &n.chunks[k-1]
	}
	var c []byte
	switch {
	case size > chunkSize:
		c = make([]byte, 0, size)
	case len(n.free) > 0:
		c = n.free[len(n.free)-1]
		n.free = n.free[:len(n.free)-1]
	default:
		c = make([]byte, 0, chunkSize)
	}
	n.chunks = append(n.chunks, c)
	return &n.chunks[len(n.chunks)-1]
}

// flush publishes the chunks waiting, one NATS message each. A NATS
// message that fails fails the waits of its own frames only: the others
// went out, and their node acknowledges them. Only the flusher calls it.
//
// On a link that cannot be dialed or written, the chunks not sent are
// kept, ahead of those appended meanwhile, and flush returns false: the
// flusher sends them once the link is up again, and until then they
// count against max_pending_bytes as before.
func (n *nodeRoute) flush() bool {
	n.bmu.Lock()
	cs := n.chunks
	n.chunks = n.taken[:0]
	n.bmu.Unlock()
	for i, c := range cs {
		if len(c) == 0 {
			// An empty chunk's one frame was over max_pending_bytes.
		} else if err := n.publish(c); err != nil && n.link != nil {
			n.bmu.Lock()
			if !n.stopped {
				kept := make([][]byte, 0, len(cs)-i+len(n.chunks))
				n.chunks = append(append(kept, cs[i:]...), n.chunks...)
			}
			n.bmu.Unlock()
			clear(cs)
			n.taken = cs[:0]
			return false
		} else if err != nil {
			n.lost([][]byte{c}, func(seq uint64) { n.unsent(seq, packet.ErrUnspecified.Value) })
		}
		n.moved.Store(time.Now().UnixNano())
		n.bmu.Lock()
		n.pending -= len(c)
		n.uncongestLocked(false)
		if len(n.free) < keptChunks && cap(c) == chunkSize {
			n.free = append(n.free, c[:0])
		}
		n.bmu.Unlock()
		cs[i] = nil
	}
	n.taken = cs[:0]
	return true
}

// acked completes the wait for seq.
func (n *nodeRoute) acked(seq uint64, code byte) {
	n.mu.Lock()
	ack := n.takeLocked(seq)
	n.trimLocked(0)
	n.mu.Unlock()
	done(ack, code)
}

// ackedBatch completes the waits of an acknowledgement batch's body
// (pairs of seq uvarint and reason byte): under one lock, then each
// publisher's, in order. acks is scratch space, returned for reuse.
func (n *nodeRoute) ackedBatch(body []byte, acks []codedAck) []codedAck {
	rd := &reader{b: body}
	n.mu.Lock()
	for len(rd.b) > 0 {
		seq := rd.uvarint()
		code := rd.byte()
		if rd.err != nil {
			break
		}
		if ack := n.takeLocked(seq); ack != nil {
			acks = append(acks, codedAck{ack, code})
		}
	}
	n.trimLocked(0)
	n.mu.Unlock()
	var ab broker.AckBatch
	for i, a := range acks {
		ab.Done(a.ack, codeErr(a.code))
		acks[i] = codedAck{}
	}
	ab.End()
	return acks[:0]
}

type codedAck struct {
	ack  broker.Acker
	code byte
}

// takeLocked takes the wait for seq (nil: none, or completed).
func (n *nodeRoute) takeLocked(seq uint64) broker.Acker {
	if seq < n.first || seq-n.first >= uint64(len(n.pend)-n.head) {
		return nil
	}
	i := n.head + int(seq-n.first)
	ack := n.pend[i].ack
	if ack != nil {
		n.pend[i].ack = nil
		n.waiting--
	}
	return ack
}

// done completes ack with an acknowledgement's reason code.
func done(ack broker.Acker, code byte) {
	if ack != nil {
		ack.Done(codeErr(code))
	}
}

// codeErr is the error of an acknowledgement's reason code (nil: 0).
func codeErr(code byte) error {
	if code == 0 {
		return nil
	}
	return packet.Code{Value: code}
}

// unsent fails the wait for seq, whose message was not sent; a held
// message's wait stays: ack_timeout sends it again.
func (n *nodeRoute) unsent(seq uint64, code byte) {
	n.mu.Lock()
	if seq >= n.first && seq-n.first < uint64(len(n.pend)-n.head) && n.pend[n.head+int(seq-n.first)].hold != nil {
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	n.acked(seq, code)
}

// trimLocked drops the completed waits at the head of pend, and the
// waits of sequences up to upTo into late.
func (n *nodeRoute) trimLocked(upTo uint64) (late []waiter) {
	for n.head < len(n.pend) {
		w := &n.pend[n.head]
		if w.ack != nil {
			if n.first > upTo {
				break
			}
			late = append(late, *w)
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

// timeout fails the waits of messages sent before deadline; a held
// message within its Hold is sent again instead. The router calls it on
// every heartbeat tick (now): a message times out between deadline and a
// tick after it, never before.
func (n *nodeRoute) timeout(now, deadline int64) {
	n.mu.Lock()
	n.marks = append(n.marks, mark{at: now, seq: n.next})
	var upTo uint64 // sequences up to it were given before deadline
	k := 0
	for k < len(n.marks) && n.marks[k].at <= deadline {
		upTo = n.marks[k].seq
		k++
	}
	n.marks = n.marks[:copy(n.marks, n.marks[k:])]
	late := n.trimLocked(upTo)
	var fail []broker.Acker
	again := late[:0]
	for _, w := range late {
		if w.hold == nil || now >= w.hold.until {
			fail = append(fail, w.ack)
		} else {
			again = append(again, w)
		}
	}
	n.timeouts += uint64(len(fail))
	n.mu.Unlock()
	for _, ack := range fail {
		ack.Done(ErrRemoteTimeout)
	}
	for _, w := range again {
		n.resend(w)
	}
}

// release ends every wait with err (nil: as accepted), and the route: the
// node is gone.
func (n *nodeRoute) release(err error) {
	n.bmu.Lock()
	chunks := n.chunks
	n.stopped, n.chunks, n.free, n.pending = true, nil, nil, 0
	n.uncongestLocked(true)
	n.bmu.Unlock()
	n.lost(chunks, func(uint64) {}) // QoS 1/2 fail their waits below
	n.closeLink()
	n.mu.Lock()
	if !n.gone {
		close(n.quit)
	}
	n.gone, n.goneErr = true, err
	pend := n.pend[n.head:]
	n.pend, n.head, n.first, n.waiting = nil, 0, n.next+1, 0
	n.mu.Unlock()
	var keep []waiter
	for _, w := range pend {
		switch {
		case w.ack == nil:
		case w.hold != nil && err != nil:
			keep = append(keep, w) // not known dead: the router keeps it
		default:
			w.ack.Done(err)
		}
	}
	if len(keep) > 0 {
		n.r.park(n.name, n.epoch, keep)
	}
}

// lost accounts for the frames of chunks that will not be sent: QoS 0
// ones are dropped (route_down), and unsent is called with the sequence
// of each QoS 1/2 one.
func (n *nodeRoute) lost(chunks [][]byte, unsent func(seq uint64)) {
	for _, c := range chunks {
		for f := c; len(f) >= 4; {
			l := 4 + int(binary.LittleEndian.Uint32(f))
			if l > len(f) {
				break
			}
			if seq := frameSeq(f[4:l]); seq != 0 {
				unsent(seq)
			} else {
				n.dropped.Add(1)
				n.r.b.CountDrop(broker.DropRouteDown)
			}
			f = f[l:]
		}
	}
}

func (n *nodeRoute) publish(batch []byte) error {
	if fn := n.r.testPublish.Load(); fn != nil {
		return (*fn)(n.name, batch)
	}
	if n.link != nil {
		return n.linkPublish(batch)
	}
	return n.r.nc.Publish(n.subj, batch)
}

// pendingBytes is what the route holds for NATS.
func (n *nodeRoute) pendingBytes() int {
	n.bmu.Lock()
	defer n.bmu.Unlock()
	return n.pending
}
