package broker

import "github.com/culexmq/culex/internal/mqtt/packet"

// ConnCount is the number of connected clients of one listener and
// protocol version.
type ConnCount struct {
	Listener string
	Version  packet.Version
	N        int
}

// Load is what a scan of every session finds.
type Load struct {
	// Connections counts the connected clients by listener and version.
	Connections []ConnCount
	// Queued is the messages waiting in session queues for delivery.
	Queued int
}

// Load scans every session, taking each one's lock in turn: for scrapes,
// not for hot paths.
func (b *Broker) Load() Load {
	type key struct {
		l string
		v packet.Version
	}
	counts, queued := map[key]int{}, 0
	b.mu.Lock()
	list := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		list = append(list, s)
	}
	b.mu.Unlock() // session.mu comes before Broker.mu (docs/broker.md)
	for _, s := range list {
		s.mu.Lock()
		if s.conn != nil && s.info != nil {
			counts[key{s.info.Listener, s.info.Version}]++
		}
		queued += s.qlenLocked()
		s.mu.Unlock()
	}
	l := Load{Queued: queued, Connections: make([]ConnCount, 0, len(counts))}
	for k, n := range counts {
		l.Connections = append(l.Connections, ConnCount{Listener: k.l, Version: k.v, N: n})
	}
	return l
}
