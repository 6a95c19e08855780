package broker

import "github.com/culexmq/culex/internal/mqtt/packet"

// Disconnect ends the live connection of clientID, if there is one, as an
// administrative action (credentials revoked, an operator's request): a v5
// client gets DISCONNECT with code first [MQTT-3.14.2-1]. The session itself
// stays, subject to its expiry. It reports whether a connection was live.
func (b *Broker) Disconnect(clientID string, code packet.Code) bool {
	c := b.liveConn(clientID)
	if c == nil {
		return false
	}
	c.kick(code)
	return true
}

// DisconnectClient ends the connection that info describes, if it is still
// its session's live one (not one that took the client id over since).
func (b *Broker) DisconnectClient(info *ClientInfo, code packet.Code) bool {
	c := b.liveConn(info.ClientID)
	if c == nil || c.info != info {
		return false
	}
	c.kick(code)
	return true
}

// liveConn returns the connection of clientID's session, or nil.
func (b *Broker) liveConn(clientID string) *conn {
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}
