package netpoll

import (
	"io"
	"net"
	"syscall"
)

// Stream returns c with its reads and writes made as raw system calls
// (see raw_linux.go) when c is a TCP connection, else c itself. It is for
// the long-lived connections a goroutine reads with blocking calls, such
// as the links between cluster nodes: they keep the net.Conn semantics
// (deadlines, Close unblocking a read), and a read or write no longer
// hands the goroutine's processor to another thread when the kernel takes
// longer than sysmon's tick, nor wakes sysmon from its idle sleep.
func Stream(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &stream{TCPConn: tc, rc: rc}
}

// stream is a TCP connection read and written with raw system calls; as
// any net.Conn, safe for concurrent use.
type stream struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Read reads once into b, waiting in the runtime poller (under the read
// deadline) while nothing has come.
func (s *stream) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	op := readOps.Get().(*readOp)
	op.b, op.wait = b, true
	err := s.rc.Read(op.fn)
	n, rerr := op.n, op.err
	op.b, op.n, op.err, op.wait = nil, 0, nil, false
	readOps.Put(op)
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case rerr != nil:
		return 0, s.opError("read", rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting in the runtime poller (under the write
// deadline) while the socket is full.
func (s *stream) Write(b []byte) (int, error) { return s.write(b, true) }

// WriteNow writes what of b the socket takes now, without waiting while
// it is full (a write deadline already past still fails it).
func (s *stream) WriteNow(b []byte) (int, error) { return s.write(b, false) }

func (s *stream) write(b []byte, wait bool) (int, error) {
	n, err := writeOne(s.rc, b, wait)
	if err != nil {
		return int(n), s.opError("write", err)
	}
	return int(n), nil
}

// WriteBuffers writes all of bufs with writev, as net.Buffers.WriteTo
// does on a TCP connection (it cannot see that a stream is one).
func (s *stream) WriteBuffers(bufs *net.Buffers) (int64, error) {
	n, err := Writev(s.rc, bufs, true)
	if err != nil {
		return n, s.opError("write", err)
	}
	return n, nil
}

// opError is err as the net package reports it, not wrapped twice (the
// RawConn's errors are *net.OpError already).
func (s *stream) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}
