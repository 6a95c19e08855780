// Package listener accepts MQTT connections over TCP, TLS, WebSocket and
// secure WebSocket, optionally behind a PROXY protocol v1/v2 header, and hands
// each connection to the broker as a net.Conn carrying a plain MQTT byte stream.
package listener

import (
	"crypto/tls"
	"net"
)

// ConnInfo describes an accepted connection.
type ConnInfo struct {
	Listener string               // the listener's URL as configured
	Scheme   string               // tcp, ssl, ws or wss
	Remote   net.Addr             // the client's address; from the PROXY header when there is one
	Local    net.Addr             // the address the client connected to
	TLS      *tls.ConnectionState // nil for plain connections
}

// Handler serves one connection; it owns conn and must close it. It is called
// on a goroutine of its own.
type Handler func(conn net.Conn, info ConnInfo)
