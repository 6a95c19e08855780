package netpoll

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/listener"
)

// Enqueue queues hdr followed by payload (which may be nil) for the
// socket and starts a flusher if none runs; it never blocks on the socket.
// With bounded set it refuses (returning false) when the queue is at the
// engine's MaxQueued bytes; it refuses once the connection is closing.
// Within a batch (not nil), the connections it hands to the flush queue
// go in batches (Batch.Push).
func (c *Conn) Enqueue(hdr, payload []byte, bounded bool, batch *Batch) bool {
	c.wmu.Lock()
	if c.wclosed || (bounded && c.wbytes >= c.e.cfg.MaxQueued) {
		c.wmu.Unlock()
		return false
	}
	if c.wqp == nil {
		c.wqp = queues.Get().(*[][]byte)
		c.wq = (*c.wqp)[:0]
	}
	c.wq = append(c.wq, hdr)
	if len(payload) > 0 {
		c.wq = append(c.wq, payload)
	}
	c.wbytes += len(hdr) + len(payload)
	if !c.flushing && !c.stepping {
		c.flushing = true
		// The reader holds a count in e.wg until Close has set wclosed, so
		// adding here never races with Wait at zero.
		c.e.wg.Add(1)
		switch {
		case !c.plainTCP():
			c.e.flushers.start(c)
		case batch != nil:
			batch.conns = append(batch.conns, c)
		default:
			c.e.fq.push(c)
		}
	}
	c.wmu.Unlock()
	if batch != nil && len(batch.conns) >= flushBatch {
		batch.Push()
	}
	return true
}

// Batch collects the connections that one pass (a fan-out) hands to the
// flush queue, pushed flushBatch at a time and by Push at the end of the
// pass: one lock and one wakeup for many, and the pass is not held up by
// the queue's goroutines at every delivery.
type Batch struct {
	conns []*Conn
}

// flushBatch is how many connections a batch hands to the flush queue at
// once: small enough that the first writes start while the pass goes on.
const flushBatch = 32

// Write writes what the batch collected on the calling goroutine: one
// writev per connection that does not wait, as a turn in the flush queue
// does (a full socket's rest goes to a flush goroutine). At most
// flushBatch connections are left to write: more were pushed on the way.
// For a caller that has nothing else to do meanwhile, as a cluster link's
// reader, it saves waking a flush goroutine on another core.
func (b *Batch) Write() {
	for i, c := range b.conns {
		b.conns[i] = nil
		c.writeTurn()
	}
	b.conns = b.conns[:0]
}

// Len is how many connections the batch holds.
func (b *Batch) Len() int { return len(b.conns) }

// Push hands what the batch collected to the flush queue.
func (b *Batch) Push() {
	if len(b.conns) > 0 {
		b.conns[0].e.fq.pushAll(b.conns)
		clear(b.conns)
		b.conns = b.conns[:0]
	}
}

// OverBound reports whether the queue is at its byte bound, noting that
// the handler waits: Drained runs once the queue is written out.
func (c *Conn) OverBound() bool {
	c.wmu.Lock()
	over := c.wbytes >= c.e.cfg.MaxQueued
	if over {
		c.outBlocked = true
	}
	c.wmu.Unlock()
	return over
}

// Closing reports whether the connection stopped taking writes.
func (c *Conn) Closing() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.wclosed
}

// beginStep makes the reader of a parked plain TCP connection write what
// its step queues (acknowledgements, and deliveries that come meanwhile)
// itself at the end of the step, instead of starting a flusher per packet.
func (c *Conn) beginStep() {
	c.wmu.Lock()
	c.stepping = true
	c.wmu.Unlock()
}

// endStep writes what the step queued without waiting for the socket;
// what the socket does not take goes to a flusher.
func (c *Conn) endStep() {
	c.wmu.Lock()
	c.stepping = false
	if c.flushing || len(c.wq) == 0 {
		c.wmu.Unlock()
		return
	}
	c.flushing = true
	c.e.wg.Add(1) // the reader holds a count, so never from zero
	if c.e.fq.busy() {
		c.wmu.Unlock()
		c.e.fq.push(c)
		return
	}
	q, qp := c.wq, c.wqp
	c.wq, c.wqp, c.wbytes = nil, nil, 0
	c.wmu.Unlock()
	if !c.writeNow(q, qp) {
		return
	}
	c.wmu.Lock()
	more := len(c.wq) > 0
	c.wmu.Unlock()
	if more {
		c.e.fq.push(c)
		return
	}
	c.flush() // finds the queue empty: ends flushing, closes or drains
}

// queues recycles the outbound queue slices, so that an idle connection
// holds none and a busy one allocates none.
var queues = sync.Pool{New: func() any { q := make([][]byte, 0, 8); return &q }}

// maxPooledQueue is the longest queue slice (entries, 24 bytes each) the
// pool keeps. A connection's queue is the pool's only while it is written,
// so an idle connection holds none; but one that a burst fills (the one
// subscriber of a fan-in) would grow a new slice from 8 entries at every
// write if long ones were dropped: in a cluster's fan-in at QoS 0 that
// was 830 MB allocated in 4 s on the receiving node, most of its garbage.
const maxPooledQueue = 1 << 16

// flush writes everything queued with one writev per batch and exits when
// the queue is empty. It holds no buffer once it returns.
func (c *Conn) flush() {
	defer c.e.wg.Done()
	wt := c.e.cfg.WriteTimeout
	if c.carry != nil { // what a reader's inline write left (endStep)
		q, qp := c.carry, c.carryQP
		c.carry, c.carryQP = nil, nil
		err := c.writeAll(q, wt)
		recycle(c.carryQ, qp)
		c.carryQ = nil
		if err != nil {
			c.writeFailed()
			return
		}
	}
	for {
		c.wmu.Lock()
		q, qp := c.wq, c.wqp
		c.wq, c.wqp, c.wbytes = nil, nil, 0
		if len(q) == 0 {
			c.flushing = false
			closed, drained := c.wclosed, c.outBlocked
			c.outBlocked = false
			c.wmu.Unlock()
			recycle(q, qp)
			if closed {
				c.closeSocket()
			} else if drained {
				c.h.Drained()
			}
			return
		}
		c.wmu.Unlock()
		err := c.writeAll(q, wt)
		recycle(q, qp)
		if err != nil {
			c.writeFailed()
			return
		}
	}
}

// writeAll writes q with writev. WriteTimeout bounds how long the socket
// may accept no bytes while its peer acknowledges none: a slow reader that
// keeps taking bytes is not cut off however long the batch takes, unless
// the connection is being closed anyway (kicked), when one more timeout
// ends it.
func (c *Conn) writeAll(q [][]byte, wt time.Duration) error {
	bufs := net.Buffers(q)
	if c.plainTCP() {
		// Most batches fit the socket buffer: try without a deadline first.
		// An expired deadline of an earlier batch fails the attempt at once;
		// the loop then sets a new one.
		n, err := Writev(c.raw, &bufs, false)
		c.e.bytesOut.Add(uint64(n))
		if len(bufs) == 0 {
			return nil
		}
		var ne net.Error
		if err != nil && (!errors.As(err, &ne) || !ne.Timeout()) {
			return err
		}
	}
	for {
		if wt > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(wt))
		}
		before := -1 // bytes the peer has yet to acknowledge
		if c.plainTCP() {
			before = unacked(c.raw)
		}
		n, err := c.writeBuffers(&bufs)
		c.e.bytesOut.Add(uint64(n))
		if err == nil || len(bufs) == 0 {
			return nil
		}
		var ne net.Error
		if c.kicked.Load() || !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
		if n == 0 && c.plainTCP() && before >= 0 {
			// The socket took nothing, but its peer may still be reading:
			// the kernel frees send buffer space (and reports the socket
			// writable) only in large steps, which a client on a slow link
			// that keeps reading may take longer than wt to free.
			if after := unacked(c.raw); after >= 0 && after < before {
				continue
			}
		}
		if n == 0 {
			return err
		}
	}
}

// plainTCP says the engine's own writev serves this connection.
func (c *Conn) plainTCP() bool { return c.raw != nil && c.tlsc == nil && !c.framed && hasWritev }

// stepWrites says the reader writes what its step queued itself (beginStep):
// a parked plain TCP connection.
func (c *Conn) stepWrites() bool { return c.nonblock && c.plainTCP() }

// writeBuffers writes bufs in as few system calls (and, on WebSocket, as
// few frames) as the connection allows, consuming what was written.
func (c *Conn) writeBuffers(bufs *net.Buffers) (int64, error) {
	if c.plainTCP() {
		return Writev(c.raw, bufs, true)
	}
	if bw, ok := c.nc.(listener.BuffersWriter); ok {
		n, err := bw.WriteBuffers(*bufs)
		if err == nil {
			*bufs = nil
		}
		return int64(n), err
	}
	if c.tlsc != nil {
		return listener.WriteGathered(c.nc, bufs)
	}
	return bufs.WriteTo(c.nc)
}

// recycle returns a written queue slice to the pool, up to maxPooledQueue
// entries.
func recycle(q [][]byte, qp *[][]byte) {
	if qp == nil {
		return
	}
	clear(q)
	if cap(q) <= maxPooledQueue {
		*qp = q[:0]
		queues.Put(qp)
	}
}

// writeFailed ends the connection after a write error or timeout: the
// queue is discarded and the reader woken (ErrWrite).
func (c *Conn) writeFailed() {
	c.wmu.Lock()
	c.wclosed, c.flushing = true, false
	recycle(c.wq, c.wqp)
	c.wq, c.wqp, c.wbytes = nil, nil, 0
	c.wmu.Unlock()
	c.Kick(ErrWrite)
	c.nc.Close()
	if c.poll != nil { // a parked reader is not woken by the close
		c.wakeup()
	}
}

// Close stops queueing; the socket closes once the flusher has written
// what was queued (bounded by WriteTimeout), or now if none runs.
func (c *Conn) Close() {
	c.wmu.Lock()
	if c.wclosed {
		c.wmu.Unlock()
		c.nc.Close()
		return
	}
	c.wclosed = true
	flushing := c.flushing
	c.wmu.Unlock()
	if !flushing {
		c.closeSocket()
	}
}

// Linger makes the close graceful (closeSocket): call it when the last
// packet queued is one the client must read although it may still be
// writing (in MQTT, a DISCONNECT or a CONNACK that refuses).
func (c *Conn) Linger() { c.graceful.Store(true) }

// Bounds on draining a client's input before the close (linger); a
// stopping engine waits lingerStop at most.
const (
	lingerTime  = 2 * time.Second
	lingerStop  = 100 * time.Millisecond
	lingerBytes = 1 << 20
)

// closeSocket closes the socket once everything queued is written. After
// Linger it closes gracefully (linger): closing a socket with unread input
// makes the kernel reset the connection and discard what it had not sent
// yet, the last packet among it, whenever the client reads slower than it
// writes.
func (c *Conn) closeSocket() {
	tcp := tcpOf(c.nc)
	if !c.graceful.Load() || tcp == nil {
		c.nc.Close()
		return
	}
	c.e.wg.Add(1) // the caller holds a count: never from zero
	go c.linger(tcp)
}

// linger shuts down the writing side (a FIN follows the last packet, and a
// TLS close_notify before it), then reads and discards what the client
// sends until it closes too, at most lingerBytes or for lingerTime, and
// closes the socket. It registers the socket first, so that Stop cuts
// every step short.
func (c *Conn) linger(tcp *net.TCPConn) {
	e := c.e
	defer e.wg.Done()
	defer c.nc.Close()
	e.mu.Lock()
	d := lingerTime
	if e.stopped {
		d = lingerStop
	}
	tcp.SetReadDeadline(time.Now().Add(d))
	if e.lingers == nil {
		e.lingers = make(map[*net.TCPConn]struct{})
	}
	e.lingers[tcp] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.lingers, tcp)
		e.mu.Unlock()
	}()
	var notify interface{ CloseWrite() error } // TLS: close_notify
	if c.tlsc != nil {
		notify = c.tlsc
	} else if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.nc != net.Conn(tcp) {
		notify = cw // the TLS 1.3 record layer (listener)
	}
	if notify != nil {
		// The close_notify waits for room in the socket's buffer, which a
		// client that stopped reading never makes; tls gives the write 5
		// s whatever the deadline, so a timer cuts it to lingerStop.
		t := time.AfterFunc(lingerStop, func() { tcp.SetWriteDeadline(time.Now()) })
		notify.CloseWrite()
		t.Stop()
	}
	if tcp.CloseWrite() != nil {
		return
	}
	var buf [512]byte
	for n := 0; n < lingerBytes; {
		m, err := tcp.Read(buf[:])
		if err != nil {
			return
		}
		n += m
	}
}

// tcpOf finds the TCP socket beneath nc (TLS, WebSocket, PROXY protocol),
// or nil.
func tcpOf(nc net.Conn) *net.TCPConn {
	for range 4 {
		switch c := nc.(type) {
		case *net.TCPConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}
