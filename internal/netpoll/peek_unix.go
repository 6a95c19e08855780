//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package netpoll

import "golang.org/x/sys/unix"

// canPeek says peekFD works on this platform.
const canPeek = true

// peekFD reports whether fd has bytes (or EOF, or an error) to read now,
// without waiting and without a buffer: a one-byte MSG_PEEK|MSG_DONTWAIT
// recvfrom into a stack array. A descriptor closed and reused meanwhile
// costs at most one Read that fails.
func peekFD(fd int32) bool {
	var b [1]byte
	_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err != unix.EAGAIN && err != unix.EWOULDBLOCK
}
