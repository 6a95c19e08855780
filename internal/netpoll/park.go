package netpoll

import (
	"runtime"
	"time"

	"github.com/culexmq/culex/internal/listener"
)

// Parked readers. A TCP or TLS connection has no goroutine while it is idle:
// its descriptor is registered with the engine's poller (one epoll instance
// and one goroutine for every connection, poll_linux.go), and a goroutine is
// started to read only when the socket is readable, the read deadline has
// passed or the connection is kicked. That goroutine owns the reader state
// until it parks the connection again, so an idle connection holds no stack
// and no buffer: only its Conn, its handler's state and the socket.
//
// The run state rs says who owns the reader:
//
//	stRunning  a goroutine owns it (at first, the one calling Handle)
//	stPending  a goroutine owns it and was asked to look again
//	stParked   nobody: the poller wakes it
//	stDead     the reader has ended
//
// The descriptor is registered once, edge-triggered: every arrival of bytes
// (or the peer's close) is an event. Only the owner moves out of stRunning,
// by parking after a read (on TLS, a peek) found the socket empty: it swaps
// stRunning for stParked. A wakeup (poller event, deadline timer, kick) either takes a
// parked conn (stParked -> stRunning, starting a goroutine) or leaves a note
// for the owner (stRunning -> stPending), whose swap then fails and who looks
// again. Bytes that arrive after the owner's last look raise an event that
// meets one of the two, so every event is seen, by one goroutine at a time.

// MaxActive bounds the goroutines serving ready connections, so that a
// storm (every device disconnecting or publishing at once) costs a bounded
// number of stacks rather than one per connection.
const MaxActive = 256

// PerCore bounds the goroutines that serve ready connections holding a
// fast slot, and those of the flush queue: one per core, and at least two
// (so one long routing pass or torn-down socket never holds up the rest).
// They then work like an event loop per core, taking connections in order,
// instead of one goroutine per connection that the scheduler spreads over
// every core at once (docs/perf-log.md, "Latency at a fixed rate").
func PerCore() int { return max(2, runtime.GOMAXPROCS(0)) }

// connFIFO is a queue of connections in arrival order. Its backing array
// stays within about twice the most connections it held at once, even when
// it never empties: a push into a full array first moves the live part to
// the front when at least half of the array is popped slots.
type connFIFO struct {
	q    []*Conn
	head int
}

func (f *connFIFO) len() int { return len(f.q) - f.head }

func (f *connFIFO) push(c *Conn) {
	if len(f.q) == cap(f.q) && f.head > 0 && f.head >= len(f.q)/2 {
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	f.q = append(f.q, c)
}

// fifoKeep is the largest backing array an emptied connFIFO keeps.
const fifoKeep = 1024

// pop takes the oldest connection; the queue must not be empty.
func (f *connFIFO) pop() *Conn {
	c := f.q[f.head]
	f.q[f.head] = nil
	f.head++
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
		if cap(f.q) > fifoKeep {
			f.q = nil // a burst's array is not kept for good
		}
	}
	return c
}

// Bounds are a poller's bounds on reader goroutines: All of them, and
// those holding a fast slot; Stall is the stall check's period. The zero
// value means the defaults: MaxActive, one per core (at least two) and
// StallCheck.
type Bounds struct {
	All, Fast int
	Stall     time.Duration
}

func (b Bounds) orDefaults() Bounds {
	if b == (Bounds{}) {
		return Bounds{All: MaxActive, Fast: PerCore(), Stall: StallCheck}
	}
	return b
}

// StallCheck is how long a backlog may make no progress before the bound
// is lifted for it: readers that block (an authentication webhook, a
// throttled publisher) must not stop the others.
const StallCheck = 10 * time.Millisecond

const (
	stRunning uint32 = iota
	stPending
	stParked
	stDead
)

// loop reads while the socket has bytes, then parks the connection, or
// ends it when the reader ends. It reports whether the calling goroutine
// still holds the fast slot it came with (c.fast).
func (c *Conn) loop() (fast bool) {
	var err error
	for {
		c.rs.Store(stRunning)
		var read bool
		read, err = c.step()
		if err == nil && (!read || c.drained) {
			// Once parked, c belongs to whoever the poller wakes.
			fast, c.fast = c.fast, false
			var parked bool
			if parked, err = c.park(); parked {
				return fast
			}
			c.fast = fast
		}
		if err != nil {
			break
		}
	}
	c.h.Closed(err)
	listener.NoteClosed()
	fast, c.fast = c.fast, false
	c.poll.remove(c)
	c.setDeadline(0)
	c.rs.Store(stDead)
	c.e.wg.Done()
	return fast
}

// step does what the socket, the deadline and Kick ask for without ever
// blocking for an idle client: the handler reads and handles what the
// socket (or TLS's read-ahead) holds, and step reports that it read, or
// fails the connection.
func (c *Conn) step() (read bool, err error) {
	c.drained = false
	if c.kicked.Load() {
		return false, c.KickErr()
	}
	switch {
	case c.nonblock:
		// A read that finds nothing returns ErrEmpty: no peek needed. A
		// read that returned less than it asked for emptied the socket, so
		// the connection may park without another read: bytes that arrive
		// after it raise an edge (see the run states above).
		step := c.stepWrites()
		if step {
			c.beginStep()
		}
		err = c.h.Step()
		if step {
			c.endStep()
		}
		if err == ErrEmpty {
			return false, c.checkDeadline()
		}
		// A short read leaves the peer's close (FIN or reset) unread when
		// it came with the bytes read or before the poller took their
		// event: one edge announced both, so the reader reads on to the
		// end instead of parking (hup).
		c.drained = c.short && !c.hup.Load()
	case peekFD(c.fd):
		if c.tlsc != nil {
			c.MayBlock() // the rest of a record may still be on its way
			c.boundRead()
		}
		err = c.h.Step()
		c.tlsMore = c.tlsc != nil
	case c.tlsMore:
		if err = c.drainTLS(); err == ErrDrained {
			c.tlsMore = false
			return false, nil
		}
	default:
		return false, c.checkDeadline()
	}
	if c.kicked.Load() {
		err = c.KickErr()
	}
	return true, err
}

// MayBlock gives up the reader's fast slot before a call that may wait (an
// authenticator, a throttled publisher, a TLS record still arriving), so
// that ready connections do not wait behind it; the reader still counts
// against the bound on all readers. Only the reader calls it.
func (c *Conn) MayBlock() {
	if c.fast {
		c.fast = false
		c.poll.release()
	}
}

// Block runs wait, a call that blocks the reader (a throttled publisher
// waiting for its pipeline): what the step queued is written first, as
// nothing queued may wait for the end of the step, and the reader gives up
// its fast slot (MayBlock). Only the reader calls it.
func (c *Conn) Block(wait func()) {
	step := c.stepWrites()
	if step {
		c.endStep()
	}
	c.MayBlock()
	wait()
	if step {
		c.beginStep()
	}
}

// boundRead makes a read that may wait (for the rest of a TLS record that
// a client may never send) end at the connection's deadline, which the
// timer enforces only between reads; Read turns it into the handler's
// Expired error.
func (c *Conn) boundRead() {
	var t time.Time
	if d := c.deadline.Load(); d != 0 {
		t = epoch.Add(time.Duration(d))
	}
	c.nc.SetReadDeadline(t)
}

// checkDeadline fails a connection whose read deadline has passed.
func (c *Conn) checkDeadline() error {
	if d := c.deadline.Load(); d != 0 && monoNow() >= d {
		return c.h.Expired()
	}
	return nil
}

// drainTLS reads the records crypto/tls read ahead of the last Read, which
// a peek at the socket cannot see: a Read under an expired deadline returns
// them, or times out (ErrDrained) without touching the socket. A timeout
// leaves crypto/tls's read state intact, partial records included.
func (c *Conn) drainTLS() error {
	c.nc.SetReadDeadline(time.Unix(1, 0))
	c.draining = true
	err := c.h.Step()
	c.draining = false
	c.nc.SetReadDeadline(time.Time{})
	return err
}

// park gives up ownership (registering the descriptor the first time); it
// reports false when a wakeup came meanwhile, and the caller looks again.
func (c *Conn) park() (bool, error) {
	if !c.added {
		if err := c.poll.register(c); err != nil {
			if c.kicked.Load() { // the socket was closed by a failed write
				return false, c.KickErr()
			}
			return false, err
		}
	}
	return c.rs.CompareAndSwap(stRunning, stParked), nil
}

// wakeup asks for the reader to look at the connection: it starts a
// goroutine for a parked connection or notes the request for the owner.
func (c *Conn) wakeup() {
	for {
		switch c.rs.Load() {
		case stParked:
			if c.rs.CompareAndSwap(stParked, stRunning) {
				c.poll.spawn(c)
				return
			}
		case stRunning:
			if c.rs.CompareAndSwap(stRunning, stPending) {
				return
			}
		default: // already pending, or ended
			return
		}
	}
}

// setDeadline sets the read deadline of a parked connection d from now; 0
// removes it. A per-connection timer enforces it; extending the deadline
// only stores the new value, and the timer, when it fires early, re-arms
// itself for the rest.
func (c *Conn) setDeadline(d time.Duration) {
	if d <= 0 {
		c.deadline.Store(0)
		if c.timer != nil {
			c.timer.Stop()
		}
		return
	}
	c.deadline.Store(monoNow() + int64(d))
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.onDeadline)
		return
	}
	c.timer.Reset(d)
}

func (c *Conn) onDeadline() {
	d := c.deadline.Load()
	if d == 0 {
		return
	}
	if rest := d - monoNow(); rest > 0 {
		c.timer.Reset(time.Duration(rest))
		return
	}
	c.wakeup()
}

// epoch is the origin of monoNow.
var epoch = time.Now()

// monoNow is monotonic time in nanoseconds, cheap to store atomically.
func monoNow() int64 { return int64(time.Since(epoch)) }
