package broker

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// enqueue queues a packet (hdr followed by payload, which may be nil) for
// the socket and starts a flush goroutine if none runs. With bounded set it
// refuses (returning false) when the queue is over the outbound byte bound.
// It never blocks on the socket.
func (c *conn) enqueue(hdr, payload []byte, bounded bool) bool {
	return c.enqueueIn(hdr, payload, bounded, nil)
}

// enqueueIn is enqueue within a routing pass (sc not nil), which hands the
// connections it gives to the flush queue over in batches (scratch.flush).
func (c *conn) enqueueIn(hdr, payload []byte, bounded bool, sc *scratch) bool {
	c.wmu.Lock()
	if c.wclosed || (bounded && c.wbytes >= c.b.outMax) {
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
		// The reader holds a count in b.wg until closeWrite has set
		// wclosed, so adding here never races with Wait at zero.
		c.b.wg.Add(1)
		switch {
		case !c.plainTCP():
			c.b.flushers.start(c)
		case sc != nil:
			sc.flush = append(sc.flush, c)
		default:
			c.b.fq.push(c)
		}
	}
	c.wmu.Unlock()
	if sc != nil && len(sc.flush) >= flushBatch {
		sc.pushFlush()
	}
	return true
}

// send queues a control packet; it is never dropped for the byte bound.
func (c *conn) send(b []byte) { c.enqueue(b, nil, false) }

// sendPacket encodes p for the connection's version and queues it.
func (c *conn) sendPacket(p packet.Packet) {
	b, err := p.Encode(nil, c.version)
	if err != nil {
		c.b.log.Error("encode", "type", p.Type(), "client", c.info.ClientID, "err", err)
		return
	}
	c.send(b)
}

// overBound reports whether the outbound queue is at its byte bound, noting
// that a QoS 1/2 message waits so the flusher pumps the session when drained.
func (c *conn) overBound() bool {
	c.wmu.Lock()
	over := c.wbytes >= c.b.outMax
	if over {
		c.outBlocked = true
	}
	c.wmu.Unlock()
	return over
}

// beginStep makes the reader of a parked plain TCP connection write what
// its step queues (acknowledgements, and deliveries that come meanwhile)
// itself at the end of the step, instead of starting a flusher per packet.
func (c *conn) beginStep() {
	c.wmu.Lock()
	c.stepping = true
	c.wmu.Unlock()
}

// endStep writes what the step queued without waiting for the socket;
// what the socket does not take goes to a flusher.
func (c *conn) endStep() {
	c.wmu.Lock()
	c.stepping = false
	if c.flushing || len(c.wq) == 0 {
		c.wmu.Unlock()
		return
	}
	c.flushing = true
	c.b.wg.Add(1) // the reader holds a count, so never from zero
	if c.b.fq.busy() {
		c.wmu.Unlock()
		c.b.fq.push(c)
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
		c.b.fq.push(c)
		return
	}
	c.flush() // finds the queue empty: ends flushing, closes or pumps
}

// queues recycles the outbound queue slices, so that an idle connection
// holds none and a busy one allocates none.
var queues = sync.Pool{New: func() any { q := make([][]byte, 0, 8); return &q }}

// flush writes everything queued with one writev per batch and exits when
// the queue is empty. It holds no buffer once it returns.
func (c *conn) flush() {
	defer c.b.wg.Done()
	wt := c.b.cfg.WriteTimeout
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
			closed, pump := c.wclosed, c.outBlocked
			c.outBlocked = false
			c.wmu.Unlock()
			recycle(q, qp)
			if closed {
				c.closeSocket()
			} else if pump && c.sess != nil {
				c.sess.pump(c)
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
func (c *conn) writeAll(q [][]byte, wt time.Duration) error {
	bufs := net.Buffers(q)
	if c.plainTCP() {
		// Most batches fit the socket buffer: try without a deadline first.
		// An expired deadline of an earlier batch fails the attempt at once;
		// the loop then sets a new one.
		n, err := writev(c.raw, &bufs, false)
		c.b.stats.bytesOut.Add(uint64(n))
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
		c.b.stats.bytesOut.Add(uint64(n))
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

// plainTCP says the broker's own writev serves this connection.
func (c *conn) plainTCP() bool { return c.raw != nil && c.tlsc == nil && !c.framed && hasWritev }

// stepWrites says the reader writes what its step queued itself (beginStep):
// a parked plain TCP connection.
func (c *conn) stepWrites() bool { return c.nonblock && c.plainTCP() }

// writeBuffers writes bufs in as few system calls (and, on WebSocket, as
// few frames) as the connection allows, consuming what was written.
func (c *conn) writeBuffers(bufs *net.Buffers) (int64, error) {
	if c.plainTCP() {
		return writev(c.raw, bufs, true)
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

// recycle returns a written queue slice to the pool.
func recycle(q [][]byte, qp *[][]byte) {
	if qp == nil {
		return
	}
	clear(q)
	if cap(q) <= 1024 {
		*qp = q[:0]
		queues.Put(qp)
	}
}

// writeFailed ends the connection after a write error or timeout: the
// queue is discarded and the reader woken.
func (c *conn) writeFailed() {
	c.wmu.Lock()
	c.wclosed, c.flushing = true, false
	recycle(c.wq, c.wqp)
	c.wq, c.wqp, c.wbytes = nil, nil, 0
	c.wmu.Unlock()
	c.kickCode.CompareAndSwap(nil, &errWrite)
	c.kicked.Store(true)
	c.nc.Close()
	if c.poll != nil { // a parked reader is not woken by the close
		c.wakeup()
	}
}

var errWrite = packet.Code{Value: 0x80, Reason: "write failed or timed out"}

// closeWrite stops queueing; the socket closes once the flusher has written
// what was queued (bounded by WriteTimeout), or now if none runs.
func (c *conn) closeWrite() {
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

// Bounds on draining a client's input before the close (linger); a
// shutting down broker waits lingerShutdown at most.
const (
	lingerTime     = 2 * time.Second
	lingerShutdown = 100 * time.Millisecond
	lingerBytes    = 1 << 20
)

// cutLingersLocked shortens every linger to lingerShutdown. b.mu is held.
func (b *Broker) cutLingersLocked() {
	t := time.Now().Add(lingerShutdown)
	for tcp := range b.lingers {
		tcp.SetReadDeadline(t)
	}
}

// closeSocket closes the socket once everything queued is written. After
// a DISCONNECT from the broker it closes gracefully (linger): closing a
// socket with unread input makes the kernel reset the connection and
// discard what it had not sent yet, the DISCONNECT among it, whenever the
// client reads slower than it writes.
func (c *conn) closeSocket() {
	tcp := tcpOf(c.nc)
	if !c.graceful.Load() || tcp == nil {
		c.nc.Close()
		return
	}
	c.b.wg.Add(1) // the caller holds a count: never from zero
	go c.linger(tcp)
}

// linger shuts down the writing side (a FIN follows the DISCONNECT, and a
// TLS close_notify before it), then reads and discards what the client
// sends until it closes too, at most lingerBytes or for lingerTime, and
// closes the socket.
func (c *conn) linger(tcp *net.TCPConn) {
	defer c.b.wg.Done()
	defer c.nc.Close()
	if c.tlsc != nil {
		c.tlsc.CloseWrite()
	}
	if tcp.CloseWrite() != nil {
		return
	}
	b := c.b
	b.mu.Lock()
	d := lingerTime
	if b.closing {
		d = lingerShutdown
	}
	tcp.SetReadDeadline(time.Now().Add(d))
	if b.lingers == nil {
		b.lingers = make(map[*net.TCPConn]struct{})
	}
	b.lingers[tcp] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.lingers, tcp)
		b.mu.Unlock()
	}()
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

// sendDisconnect queues a v5 DISCONNECT with code [MQTT-4.13.2-1].
func (c *conn) sendDisconnect(code packet.Code) {
	d := &packet.Disconnect{ReasonCode: code.Value}
	c.reasonString(&d.Props, code)
	b, err := d.Encode(nil, packet.V5)
	if err == nil {
		c.graceful.Store(true)
		c.send(b)
	}
}

// reasonString sets a Reason String from code when the client allows
// problem information [MQTT-3.1.2-29].
func (c *conn) reasonString(p *packet.Properties, code packet.Code) {
	if c.problem && code.Reason != "" {
		p.ReasonString = code.Reason
		p.Set(packet.PropReasonString)
	}
}
