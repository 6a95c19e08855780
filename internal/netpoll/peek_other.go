//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package netpoll

// canPeek says peekFD works on this platform; here it does not, and the
// reader blocks in Read with a pooled buffer.
const canPeek = false

func peekFD(fd int32) bool { return false }
