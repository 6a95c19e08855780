//go:build !linux

package netpoll

import (
	"errors"
	"net"
	"syscall"
)

// Writev writes bufs to the connection behind raw; on this platform the
// engine writes through net.Buffers on the net.Conn instead (writeBuffers).
func Writev(raw syscall.RawConn, bufs *net.Buffers, wait bool) (int64, error) {
	return 0, errNoWritev
}

var errNoWritev = errors.New("writev: not on this platform")

const hasWritev = false

func unacked(syscall.RawConn) int { return -1 }

// ErrAgain and ReadFD serve parked connections, which this
// platform has none of (there is no poller).
var ErrAgain = errors.ErrUnsupported

// ReadFD is not made on this platform.
func ReadFD(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
