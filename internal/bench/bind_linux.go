package bench

import "syscall"

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT) delays the choice of the
// source port to connect time, so a bound source address can reuse a port
// for different destinations and holds the full ephemeral range.
const ipBindAddressNoPort = 24

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket about to be bound to
// a --local-addrs address.
func bindNoPort(fd uintptr) {
	syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
}
