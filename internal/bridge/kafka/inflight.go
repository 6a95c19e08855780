package kafka

import (
	"context"
	"sync"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho/session"
)

// inflightGate bounds the source messages of one standalone session that
// are produced to Kafka and not yet acknowledged to the broker to Receive
// Maximum. A conforming broker never sends more unacknowledged QoS 1/2
// messages than that [MQTT-3.3.4-9], so the gate never waits for one; a
// broker that does (Mosquitto 2.0.11 with a backlog) has the excess held
// here, in receive order, before anything of it reaches Kafka. A crash
// then duplicates in Kafka only messages produced and not acknowledged,
// at most Receive Maximum: the held ones were never produced.
//
// A slot frees once the message's PUBACK is written to the socket (the
// kernel still sends it if the process dies next), not when the bridge
// asks paho to acknowledge: paho batches PUBACKs and sends them in
// receive order [MQTT-4.6.0-2].
type inflightGate struct {
	max  int
	stop <-chan struct{} // closed when the session ends
	// warned: the broker exceeded Receive Maximum on this connection.
	warned bool // only the receiving goroutine touches it

	// mu guards order and freed. It is held while a PUBACK is written, so
	// a broker that answers it at once with the next message finds the
	// slot free.
	mu    sync.Mutex
	order []uint16      // packet ids of the slots taken, in receive order
	freed chan struct{} // closed (and replaced) when slots free
}

func newInflightGate(receiveMaximum uint16, stop <-chan struct{}) *inflightGate {
	return &inflightGate{max: max(int(receiveMaximum), 1), stop: stop, freed: make(chan struct{})}
}

// acquire takes a slot for the received QoS 1/2 message id, waiting when
// the broker exceeded Receive Maximum (warn is called the first time).
// False: the session or ctx ended first.
func (g *inflightGate) acquire(ctx context.Context, id uint16, warn func()) bool {
	for {
		g.mu.Lock()
		if len(g.order) < g.max {
			g.order = append(g.order, id)
			g.mu.Unlock()
			return true
		}
		freed := g.freed
		g.mu.Unlock()
		if !g.warned {
			g.warned = true
			warn()
		}
		select {
		case <-freed:
		case <-g.stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// ackedLocked frees the slots up to and including the message id, whose
// PUBACK was just written.
func (g *inflightGate) ackedLocked(id uint16) {
	for i, x := range g.order {
		if x == id {
			g.order = g.order[i+1:]
			close(g.freed)
			g.freed = make(chan struct{})
			return
		}
	}
}

// gateSession is paho's in-memory session, telling the gate when a PUBACK
// is written. It closes itself when the connection is lost, as paho does
// with the session it creates: one connection, one session state (the
// broker holds the real session).
type gateSession struct {
	session.SessionManager
	gate *inflightGate
}

// Ack writes the acknowledgement of pb, then frees its slot.
func (s gateSession) Ack(pb *packets.Publish) error {
	s.gate.mu.Lock()
	defer s.gate.mu.Unlock()
	err := s.SessionManager.Ack(pb)
	if err == nil {
		s.gate.ackedLocked(pb.PacketID)
	}
	return err
}

// ConnectionLost implements session.SessionManager.
func (s gateSession) ConnectionLost(dp *packets.Disconnect) error {
	err := s.SessionManager.ConnectionLost(dp)
	_ = s.SessionManager.Close() // releases calls blocked in the session
	return err
}
