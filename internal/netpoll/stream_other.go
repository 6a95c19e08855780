//go:build !linux

package netpoll

import "net"

// Stream returns c: raw system calls are made on Linux only.
func Stream(c net.Conn) net.Conn { return c }
