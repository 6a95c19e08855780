package broker

import "github.com/culexmq/culex/internal/mqtt/packet"

// Disconnect ends the live connection of clientID, if there is one, as an
// administrative action (credentials revoked, an operator's request): a v5
// client gets DISCONNECT with code first [MQTT-3.14.2-1]. The session itself
// stays, subject to its expiry. It reports whether a connection was live.
func (b *Broker) Disconnect(clientID string, code packet.Code) bool {
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.kick(code)
	return true
}
