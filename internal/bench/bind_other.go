//go:build !linux

package bench

// bindNoPort does nothing: IP_BIND_ADDRESS_NO_PORT is Linux's.
func bindNoPort(uintptr) {}
