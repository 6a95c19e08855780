//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package broker

import "errors"

// canPeek says peekFD works on this platform; here it does not, and the
// reader blocks in Read with a pooled buffer.
const canPeek = false

func peekFD(fd int32) bool { return false }

// errAgain and readFD serve parked connections, which this platform has
// none of (there is no poller).
var errAgain = errors.ErrUnsupported

func readFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
