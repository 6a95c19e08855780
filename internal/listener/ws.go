package listener

import (
	"errors"
	"net"
)

// upgrade runs the server side of the WebSocket opening handshake on conn.
func upgrade(conn net.Conn, path string) (net.Conn, error) {
	return nil, errors.New("websocket: not implemented yet")
}
