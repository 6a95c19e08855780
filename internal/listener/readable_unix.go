//go:build unix

package listener

import (
	"net"
	"syscall"
)

// readable says whether c has bytes (or an end) to read. With wait it
// waits for them in the runtime's poller, until c's read deadline; false
// then means the deadline passed or c was closed. A conn that is not a
// socket is taken as readable.
func readable(c net.Conn, wait bool) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	ready := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
		return ready || !wait
	})
	return ready && err == nil
}
