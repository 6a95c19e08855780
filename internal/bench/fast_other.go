//go:build !linux

package bench

import "net"

// fast returns nc: raw socket calls are made on Linux only (fast_linux.go).
func fast(nc net.Conn) net.Conn { return nc }
