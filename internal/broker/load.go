package broker

import (
	"sync/atomic"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// ConnCount is the number of connected clients of one listener and
// protocol version.
type ConnCount struct {
	Listener string
	Version  packet.Version
	N        int
}

// Load is the broker's gauges of connections and queued messages.
type Load struct {
	// Connections counts the connected clients by listener and version
	// (zero for a pair that had clients and has none now).
	Connections []ConnCount
	// Queued is the messages waiting in session queues for delivery.
	Queued int
}

// connKey is the listener and protocol version of a connection gauge.
type connKey struct {
	listener string
	version  packet.Version
}

// connGauge returns the gauge of the clients connected through listener
// with version v.
func (b *Broker) connGauge(listener string, v packet.Version) *atomic.Int64 {
	k := connKey{listener, v}
	if g, ok := b.stats.conns.Load(k); ok {
		return g.(*atomic.Int64)
	}
	g, _ := b.stats.conns.LoadOrStore(k, new(atomic.Int64))
	return g.(*atomic.Int64)
}

// releaseSlot gives back the connection slot and gauge c took at CONNECT.
func (b *Broker) releaseSlot(c *conn) {
	b.stats.connected.Add(-1)
	if c.gauge != nil {
		c.gauge.Add(-1)
	}
}

// Load reads the gauges kept as clients connect and disconnect and as
// session queues change: no lock, no scan, at any number of sessions.
func (b *Broker) Load() Load {
	l := Load{Queued: int(b.stats.queued.Load())}
	b.stats.conns.Range(func(k, g any) bool {
		key := k.(connKey)
		l.Connections = append(l.Connections, ConnCount{Listener: key.listener, Version: key.version, N: int(g.(*atomic.Int64).Load())})
		return true
	})
	return l
}
