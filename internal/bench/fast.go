package bench

import (
	"errors"
	"net"
	"time"

	"github.com/culexmq/culex/internal/netpoll"
)

// fastConn reads and writes a plain TCP connection with raw system calls
// (netpoll.Stream). A call made the usual way tells the scheduler it may
// block, and one that outlasts sysmon's 20 µs tick (a loopback write runs
// the receiver's side of TCP inside the call) has its processor handed to
// another thread, which has to be woken. The load generator is most of the
// work on the fan-out 1:1000 rows, so its own wakeups are part of what
// they measure. The calls are the socket engine's, which the broker makes
// the same way; the bench still works against any broker.
type fastConn struct {
	net.Conn // a netpoll.Stream
	now      nowWriter
}

// nowWriter writes what the socket takes now, without waiting.
type nowWriter interface {
	WriteNow(b []byte) (int, error)
}

// fast wraps a plain TCP connection on Linux; any other, or on another
// platform, is returned as it is.
func fast(nc net.Conn) net.Conn {
	s := netpoll.Stream(nc)
	now, ok := s.(nowWriter)
	if !ok {
		return nc
	}
	return &fastConn{Conn: s, now: now}
}

// writeTimed writes all of b. A write deadline is set only while the
// socket is full: setting one for every write would cost a timer update
// each.
func (f *fastConn) writeTimed(b []byte, timeout time.Duration) error {
	n, err := f.now.WriteNow(b)
	var ne net.Error
	switch {
	case err == nil && n == len(b):
		return nil
	case err != nil && !(errors.As(err, &ne) && ne.Timeout()):
		return err
	}
	f.SetWriteDeadline(time.Now().Add(timeout))
	if _, err = f.Write(b[n:]); err != nil {
		return err
	}
	return f.SetWriteDeadline(time.Time{})
}
