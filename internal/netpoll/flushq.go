package netpoll

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// flushQueue holds the plain TCP connections that have packets to write,
// in the order they got them, for at most max goroutines that never wait on
// a socket: each takes a connection, writes its whole queue with one writev
// that does not wait, and takes the next. A connection whose socket is full
// goes to a flush goroutine of its own (conn.flush), which may wait.
//
// A message for 1,000 subscribers is then 1,000 writes on a few goroutines
// in delivery order, as an event loop would do them, rather than 1,000
// goroutine wakeups that the scheduler spreads over every core at once.
type flushQueue struct {
	mu      sync.Mutex
	q       connFIFO
	running int
	max     int
	queued  atomic.Int32 // len(q) - head, read without mu
	turners *workers[struct{}]
}

func newFlushQueue() *flushQueue {
	f := &flushQueue{max: PerCore()}
	f.turners = newWorkers(func(struct{}) { f.serve() })
	return f
}

// push queues c, whose flushing token the caller hands over, and starts a
// goroutine if fewer than max serve the queue.
func (f *flushQueue) push(c *Conn) {
	f.mu.Lock()
	f.q.push(c)
	f.queued.Add(1)
	if f.running >= f.max {
		f.mu.Unlock()
		return
	}
	f.running++
	f.mu.Unlock()
	f.turners.start(struct{}{})
}

// pushAll queues cs, like push, with one lock, starting as many goroutines
// as they need within max.
func (f *flushQueue) pushAll(cs []*Conn) {
	f.mu.Lock()
	for _, c := range cs {
		f.q.push(c)
	}
	f.queued.Add(int32(len(cs)))
	n := min(len(cs), f.max-f.running)
	f.running += max(n, 0)
	f.mu.Unlock()
	for range n {
		f.turners.start(struct{}{})
	}
}

func (f *flushQueue) serve() {
	for {
		f.mu.Lock()
		if f.q.len() == 0 {
			f.running--
			f.mu.Unlock()
			return
		}
		c := f.q.pop()
		f.queued.Add(-1)
		f.mu.Unlock()
		c.writeTurn()
	}
}

// writeTurn is one turn of c in the flush queue. It holds the flushing
// token and a count in e.wg, and passes both on: back to the queue when
// more was queued meanwhile, to a flush goroutine when the socket is full,
// a close is due or the handler waits for the drain, or it ends them.
func (c *Conn) writeTurn() {
	c.wmu.Lock()
	q, qp := c.wq, c.wqp
	if len(q) == 0 || c.outBlocked {
		c.wmu.Unlock()
		c.e.flushers.start(c) // flush: closes, or tells the handler it drained
		return
	}
	c.wq, c.wqp, c.wbytes = nil, nil, 0
	c.wmu.Unlock()
	if !c.writeNow(q, qp) {
		return
	}
	c.wmu.Lock()
	switch {
	case len(c.wq) > 0:
		c.wmu.Unlock()
		c.e.fq.push(c)
	case c.wclosed || c.outBlocked:
		c.wmu.Unlock()
		c.e.flushers.start(c)
	default:
		c.flushing = false
		c.wmu.Unlock()
		c.e.wg.Done()
	}
}

// writeNow writes q with one writev that does not wait and recycles it. If
// the socket did not take it all, it passes the flushing token and the
// e.wg count on (the rest to a flush goroutine, or a failed write ends the
// connection) and reports false.
func (c *Conn) writeNow(q [][]byte, qp *[][]byte) bool {
	bufs := net.Buffers(q)
	n, err := Writev(c.raw, &bufs, false)
	c.e.bytesOut.Add(uint64(n))
	if len(bufs) == 0 {
		recycle(q, qp)
		return true
	}
	// The socket is full, or an old deadline expired, or an error.
	var ne net.Error
	if err != nil && (!errors.As(err, &ne) || !ne.Timeout()) {
		recycle(q, qp)
		c.writeFailed()
		c.e.wg.Done()
		return false
	}
	c.carry, c.carryQ, c.carryQP = [][]byte(bufs), q, qp
	c.e.flushers.start(c)
	return false
}

// busy reports whether connections wait in the queue: a reader then queues
// its step's replies behind them instead of writing them itself, so that a
// burst of deliveries goes out first, in order.
func (f *flushQueue) busy() bool { return f.queued.Load() > 0 }
