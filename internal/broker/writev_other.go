//go:build !linux

package broker

import (
	"errors"
	"net"
	"syscall"
)

// writev writes bufs to the connection behind raw; on this platform through
// net.Buffers on the net.Conn (see writeBuffers).
func writev(raw syscall.RawConn, bufs *net.Buffers, wait bool) (int64, error) { return 0, errNoWritev }

var errNoWritev = &connError{"writev: not on this platform"}

const hasWritev = false

func unacked(syscall.RawConn) int { return -1 }

// errAgain and readFD serve parked connections, which this platform has
// none of (there is no poller).
var errAgain = errors.ErrUnsupported

func readFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
