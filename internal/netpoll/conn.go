package netpoll

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/culexmq/culex/internal/listener"
)

// Handler is the protocol side of a connection: the engine calls it to
// read, when a deadline passes and when the connection ends.
type Handler interface {
	// Step reads what the connection holds through Conn.Read and handles
	// it; an error ends the connection. On a parked connection Read never
	// waits: it returns ErrEmpty when the socket is empty.
	Step() error
	// Expired is the error that ends a connection whose read deadline
	// passed.
	Expired() error
	// Closed runs once when the reader stops with err: the handler lets go
	// of the connection and calls Conn.Close.
	Closed(err error)
	// Drained runs when the write queue, after OverBound refused more, has
	// been written out.
	Drained()
}

var (
	// ErrEmpty is what Read returns when a parked socket holds nothing; it
	// never ends a connection.
	ErrEmpty = errors.New("netpoll: nothing to read")
	// ErrDrained is what Read returns when TLS's read-ahead is drained; it
	// never ends a connection.
	ErrDrained = errors.New("netpoll: nothing read ahead")
	// ErrWrite ends a connection whose write failed or timed out.
	ErrWrite = errors.New("write failed or timed out")
)

// Conn is the socket state of one connection: how it is read (parked in
// the poller, or by a goroutine blocked in Read), its write queue, and
// whether it was kicked. Whoever runs its reader owns the fields above
// rs; the rest say who guards them.
type Conn struct {
	e    *Engine
	h    Handler
	nc   net.Conn
	raw  syscall.RawConn // the TCP socket's (beneath TLS or WebSocket too); nil where canPeek is false
	fd   int32           // raw's descriptor for peekFD; -1 without raw
	tlsc *tls.Conn       // nc, or the conn beneath nc's WebSocket, when it is TLS: raw is its socket's, and it may hold read-ahead
	poll *poller         // parks the idle reader; nil: a goroutine blocks in Read
	fast bool            // the owning poller reader holds a fast slot (MayBlock)

	added    bool // registered with poll
	nonblock bool // parked plain TCP or WebSocket: reads never wait (ErrEmpty)
	framed   bool // nonblock WebSocket: nc reads the frames, readSocket the socket
	drained  bool // the last step left the socket empty
	short    bool // the last nonblock read returned less than asked: the socket was empty, unless hup
	tlsMore  bool // tlsc may hold records read ahead of the last Read
	draining bool // reading only what tlsc holds: a timeout means nothing

	// Parked readers (poll != nil): the run state (park.go), the read
	// deadline as a monoNow value (0: none) and the timer that enforces it.
	rs       atomic.Uint32
	gen      uint32 // tells this conn's poller events from a reused descriptor's; guarded by poll.mu
	deadline atomic.Int64
	timer    *time.Timer
	// hup is set by the poller, before it wakes the reader, when an event
	// said the peer closed (or reset) the socket: a short read then no
	// longer means the socket is empty, as the end still waits to be read
	// and no further edge will announce it.
	hup atomic.Bool

	// Kick sets these from any goroutine.
	kicked  atomic.Bool
	kickErr atomic.Pointer[error]
	// graceful says the close is to be graceful (Linger).
	graceful atomic.Bool

	// wmu guards the outbound queue. A flusher runs while flushing.
	wmu        sync.Mutex
	wq         [][]byte
	wqp        *[][]byte // the pooled holder of wq
	wbytes     int
	flushing   bool
	wclosed    bool
	outBlocked bool // OverBound refused: Drained runs once the queue is written
	stepping   bool // the reader writes the queue at the end of its step (endStep)
	// carry is what endStep's write left, for the flusher it starts; the
	// flushing owner holds it. carryQ and carryQP are its queue, to recycle.
	carry   [][]byte
	carryQ  [][]byte
	carryQP *[][]byte
}

// Open takes nc for h, or closes it and returns nil once the engine is
// stopped. A TCP, TLS or WebSocket (over TCP or TLS) connection is parked
// in the poller between reads; any other has a goroutine blocked in Read.
// Start serves it.
func (e *Engine) Open(nc net.Conn, h Handler) *Conn {
	c := &Conn{e: e, h: h, nc: nc, fd: -1}
	listener.NoteOpened()
	sc, _ := nc.(syscall.Conn)
	if tc, ok := nc.(*tls.Conn); ok {
		// The handshake may have read the first packet ahead already.
		c.tlsc, c.tlsMore = tc, true
		sc, _ = tc.NetConn().(syscall.Conn)
	}
	// WebSocket over plain TCP is parked like TCP: its frames are read
	// through nc, which reads the socket with readSocket (never waiting).
	// WebSocket over TLS is parked like TLS, on the TLS conn's socket.
	// A TLS 1.3 connection carried on by the listener's record layer is
	// framed over TCP too, and WebSocket over it parks the same way: the
	// record layer reads the socket, the WebSocket conn the records.
	ws, _ := nc.(listener.Framed)
	src := ws // reads the socket
	if ws != nil {
		sc = nil
		switch under := ws.NetConn().(type) {
		case *net.TCPConn:
			sc = under
		case *tls.Conn:
			c.tlsc, c.tlsMore = under, true
			sc, _ = under.NetConn().(syscall.Conn)
		case listener.Framed:
			if tcp, ok := under.NetConn().(*net.TCPConn); ok {
				sc, src = tcp, under
			}
		}
	}
	if sc != nil && canPeek {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			raw.Control(func(fd uintptr) { c.fd = int32(fd) })
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		nc.Close()
		return nil
	}
	if c.fd >= 0 {
		c.poll = e.pollerLocked()
		_, tcp := nc.(*net.TCPConn)
		c.nonblock = c.poll != nil && (tcp || ws != nil && c.tlsc == nil)
		if c.nonblock && ws != nil {
			c.framed = true
			src.SetSource(c.readSocket)
		}
	}
	e.wg.Add(1)
	return c
}

// Start serves the connection with a read deadline d from now (0: none):
// a parked one until it parks (the poller then wakes it), any other on
// the caller's goroutine until it ends.
func (c *Conn) Start(d time.Duration) {
	if c.poll != nil {
		c.setDeadline(d)
		c.loop()
		return
	}
	c.SetReadTimeout(d)
	var err error
	for err == nil {
		err = c.h.Step()
		// Kick stores the flag before expiring the deadline; checking it
		// after Step extended the deadline means one of the two sees the
		// other.
		if c.kicked.Load() {
			err = c.KickErr()
		}
	}
	c.h.Closed(err)
	c.e.wg.Done()
}

// Parked reports whether the connection is parked now: no goroutine
// serves it until the poller wakes it.
func (c *Conn) Parked() bool { return c.rs.Load() == stParked }

// SetReadTimeout sets how long the client may send nothing, from now; 0
// means forever.
func (c *Conn) SetReadTimeout(d time.Duration) {
	if c.poll != nil {
		c.setDeadline(d)
		return
	}
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	c.nc.SetReadDeadline(t)
}

// Touch moves the read deadline to d from now after traffic: on a parked
// connection it only stores it (the timer, when it fires early, re-arms
// itself for the rest).
func (c *Conn) Touch(d time.Duration) {
	if c.poll != nil {
		c.deadline.Store(monoNow() + int64(d))
		return
	}
	c.nc.SetReadDeadline(time.Now().Add(d))
}

// More reports whether the socket has bytes to read now, without reading.
func (c *Conn) More() bool { return c.fd >= 0 && peekFD(c.fd) }

// Read reads from the connection; a parked plain one never waits and
// returns ErrEmpty when the socket holds nothing. A passed read deadline
// is the handler's Expired error, a kick the kick's error.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.read(b)
	c.e.bytesIn.Add(uint64(n))
	if err != nil && err != ErrEmpty {
		err = c.readErr(err)
	}
	return n, err
}

func (c *Conn) read(b []byte) (int, error) {
	switch {
	case !c.nonblock:
		return c.nc.Read(b)
	case c.framed:
		// A read that ends with a frame says nothing about the socket.
		n, err := c.nc.Read(b)
		c.short = false
		return n, err
	}
	return c.readSocket(b)
}

// readErr turns a read deadline into the handler's timeout.
func (c *Conn) readErr(err error) error {
	if c.kicked.Load() {
		return c.KickErr()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c.draining {
			return ErrDrained
		}
		return c.h.Expired()
	}
	return err
}

// readOp is the state of one read through a RawConn, pooled with the func
// the RawConn calls, so that a read allocates nothing (see writevOp). With
// wait set, the RawConn waits in the runtime poller while the socket is
// empty (Stream).
type readOp struct {
	fn   func(fd uintptr) bool // op.read
	b    []byte
	n    int
	err  error
	wait bool
}

var readOps = sync.Pool{New: func() any {
	op := new(readOp)
	op.fn = op.read
	return op
}}

func (op *readOp) read(fd uintptr) bool {
	op.n, op.err = ReadFD(fd, op.b)
	return !op.wait || op.err != ErrAgain
}

// readSocket reads the socket of a nonblock connection without waiting:
// ErrEmpty when it holds nothing.
func (c *Conn) readSocket(b []byte) (int, error) {
	op := readOps.Get().(*readOp)
	op.b = b
	rerr := c.raw.Read(op.fn)
	n, err := op.n, op.err
	op.b, op.n, op.err = nil, 0, nil
	readOps.Put(op)
	if rerr != nil {
		return 0, rerr
	}
	switch {
	case err == ErrAgain:
		return 0, ErrEmpty
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("read", err)}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	c.short = n < len(b)
	return n, nil
}

// Kick asks the reader to end with err, from any goroutine, and reports
// whether this was the first kick; Wake makes the reader look.
func (c *Conn) Kick(err error) bool {
	if !c.kickErr.CompareAndSwap(nil, &err) {
		return false
	}
	c.kicked.Store(true)
	return true
}

// Kicked reports whether the connection was kicked.
func (c *Conn) Kicked() bool { return c.kicked.Load() }

// KickErr is the error of the first kick, or nil.
func (c *Conn) KickErr() error {
	if p := c.kickErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Wake makes the reader look at the connection now: a parked one is
// served, a blocked Read returns at an expired deadline.
func (c *Conn) Wake() {
	if c.poll != nil {
		c.wakeup()
		return
	}
	c.nc.SetReadDeadline(time.Unix(1, 0))
}
