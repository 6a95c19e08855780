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

// peekFD reports whether fd has bytes (or EOF, or an error) to read now,
// without waiting. A busy reader uses it to go on reading; a descriptor
// closed and reused meanwhile costs at most one Read that fails.
func peekFD(fd int32) bool { return peekReady(uintptr(fd)) }
