//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package broker

import "syscall"

// canPeek says peekReady works on this platform.
const canPeek = true

// peekReady is the syscall.RawConn.Read callback that waits for readability
// without a buffer: a one-byte MSG_PEEK|MSG_DONTWAIT recvfrom into a stack
// array. On EAGAIN it returns false and the runtime poller parks the reader
// until the socket is readable; anything else (data, EOF, an error) ends the
// wait and the following Read reports it.
func peekReady(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
