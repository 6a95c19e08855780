package bench

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/culexmq/culex/internal/netpoll"
)

// fastConn reads and writes a plain TCP connection with raw system calls.
// A call made the usual way tells the scheduler it may block, and one that
// outlasts sysmon's 20 µs tick (a loopback write runs the receiver's side
// of TCP inside the call) has its processor handed to another thread,
// which has to be woken. The load generator is most of the work on the
// fan-out 1:1000 rows, so its own wakeups are part of what they measure.
// The calls are the socket engine's (internal/netpoll), which the broker
// makes the same way; the bench still works against any broker.
//
// Reads come from the one reader goroutine, writes from whichever
// goroutine holds the client's flushing token, so each side's state is
// its own, and the funcs the RawConn calls are made once.
type fastConn struct {
	*net.TCPConn
	raw syscall.RawConn

	rb   []byte
	rn   int
	rerr error
	rfn  func(fd uintptr) bool

	wb    []byte
	wn    int
	werr  error
	wwait bool
	wfn   func(fd uintptr) bool
}

// fast wraps a plain TCP connection; any other is returned as it is.
func fast(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	f := &fastConn{TCPConn: tc, raw: raw}
	f.rfn, f.wfn = f.read, f.write
	return f
}

func (f *fastConn) Read(b []byte) (int, error) {
	f.rb = b
	err := f.raw.Read(f.rfn)
	n, rerr := f.rn, f.rerr
	f.rb, f.rn, f.rerr = nil, 0, nil
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: f.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// read reads once, or waits in the runtime poller while the socket is empty.
func (f *fastConn) read(fd uintptr) bool {
	n, err := netpoll.ReadFD(fd, f.rb)
	switch {
	case err == nil:
		f.rn = n
	case err == netpoll.ErrAgain:
		return false
	default:
		f.rerr = err
	}
	return true
}

// Write writes all of b, waiting while the socket is full (under the write
// deadline).
func (f *fastConn) Write(b []byte) (int, error) { return f.writeRaw(b, true) }

// writeTimed writes all of b. A write deadline is set only while the
// socket is full: setting one for every write would cost a timer update
// each.
func (f *fastConn) writeTimed(b []byte, timeout time.Duration) error {
	n, err := f.writeRaw(b, false)
	var ne net.Error
	switch {
	case err == nil && n == len(b):
		return nil
	case err != nil && !(errors.As(err, &ne) && ne.Timeout()):
		return err
	}
	f.SetWriteDeadline(time.Now().Add(timeout))
	if _, err = f.writeRaw(b[n:], true); err != nil {
		return err
	}
	return f.SetWriteDeadline(time.Time{})
}

func (f *fastConn) writeRaw(b []byte, wait bool) (int, error) {
	f.wb, f.wwait = b, wait
	err := f.raw.Write(f.wfn)
	n, werr := f.wn, f.werr
	f.wb, f.wn, f.werr = nil, 0, nil
	if err == nil && werr != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Addr: f.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
	}
	return n, err
}

// write writes what it can; with wwait set it waits in the runtime poller
// while the socket is full.
func (f *fastConn) write(fd uintptr) bool {
	for len(f.wb) > 0 {
		n, err := netpoll.WriteFD(fd, f.wb)
		switch {
		case err == nil:
			f.wn += n
			f.wb = f.wb[n:]
		case err == netpoll.ErrAgain:
			return !f.wwait
		default:
			f.werr = err
			return true
		}
	}
	return true
}
