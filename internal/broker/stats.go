package broker

import (
	"sync"
	"sync/atomic"
)

// DropReason says why a message copy was not delivered.
type DropReason uint8

// Drop reasons; each has a counter in Stats.Drops.
const (
	DropQueueFull      DropReason = iota // session queue at MaxQueuedMessages
	DropOutboundFull                     // QoS 0 over the connection's outbound byte bound
	DropPacketTooLarge                   // over the client's Maximum Packet Size
	DropExpired                          // Message Expiry Interval passed
	DropNotAuthorized                    // publish or receive denied
	DropInflight                         // in-flight message lost with a discarded session
	DropOffline                          // QoS 0 for a session with no connection
	DropInvalid                          // invalid payload or topic
	DropIntercepted                      // failed by an interceptor
	DropRouteFull                        // QoS 0 for another node over cluster.max_pending_bytes
	DropLogLimit                         // removed from the cluster's log by its limits before a session read it
	DropRouteDown                        // QoS 0 for another node in a batch NATS did not take, or still held when that node was seen gone
	numDropReasons
)

var dropNames = [numDropReasons]string{"queue_full", "outbound_full", "packet_too_large",
	"expired", "not_authorized", "inflight", "offline", "invalid", "intercepted", "route_full", "log_limit", "route_down"}

// String is the reason's name as used in Stats.Drops and metrics labels.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats is a snapshot of the broker's counters for metrics and $SYS.
type Stats struct {
	Connects         uint64 // CONNACKs with success
	Disconnects      uint64 // connections that ended after CONNACK
	ClientsConnected int64
	Sessions         int64  // sessions held, connected or not
	PublishesIn      uint64 // PUBLISH packets received
	PublishesOut     uint64 // PUBLISH packets sent
	// PublishesInQoS and PublishesOutQoS split them by QoS (0, 1, 2).
	PublishesInQoS, PublishesOutQoS [3]uint64
	BytesIn                         uint64
	BytesOut                        uint64
	Subscriptions                   int64
	Retained                        int64
	Drops                           map[string]uint64 // by DropReason name
	// PersistentSessions are the sessions the store keeps (expiry > 0),
	// counted against mqtt.max_sessions.
	PersistentSessions int64
	// TakeoverRefused counts CONNECTs refused because the client id's
	// session belongs to another identity (docs/security.md).
	TakeoverRefused uint64
	// BindingRefused counts CONNECTs refused by auth.client_id_binding.
	BindingRefused uint64
	// SessionsRefused counts CONNECTs refused at mqtt.max_sessions.
	SessionsRefused uint64
	// RetainedRefused counts retained messages not stored at
	// mqtt.max_retained_messages or mqtt.max_retained_bytes.
	RetainedRefused uint64
	PollErrors      uint64 // failed waits of the poller, each recovered from
}

// counters are the broker's live counters.
type counters struct {
	connects, disconnects     atomic.Uint64
	connected                 atomic.Int64
	publishesIn, publishesOut [4]atomic.Uint64 // by QoS; 3 stays 0
	drops                     [numDropReasons]atomic.Uint64
	persistent                atomic.Int64 // sessions with persistent set and not gone
	takeoverRefused           atomic.Uint64
	bindingRefused            atomic.Uint64
	sessionsRefused           atomic.Uint64
	retainedRefused           atomic.Uint64
	pollErrors                atomic.Uint64
	// queued is the messages in every session queue, kept as queues
	// change so that a scrape reads it without scanning sessions.
	queued atomic.Int64
	// conns holds a *atomic.Int64 of connected clients per connKey.
	conns sync.Map
}

// Stats returns a snapshot of the counters.
func (b *Broker) Stats() Stats {
	s := Stats{
		Connects:         b.stats.connects.Load(),
		Disconnects:      b.stats.disconnects.Load(),
		ClientsConnected: b.stats.connected.Load(),
		Subscriptions:    int64(b.subs.Len() + b.shared.Len()),
		Retained:         int64(b.retained.Len()),
		Drops:            make(map[string]uint64, numDropReasons),

		PersistentSessions: b.stats.persistent.Load(),
		TakeoverRefused:    b.stats.takeoverRefused.Load(),
		BindingRefused:     b.stats.bindingRefused.Load(),
		SessionsRefused:    b.stats.sessionsRefused.Load(),
		RetainedRefused:    b.stats.retainedRefused.Load(),
		PollErrors:         b.stats.pollErrors.Load(),
	}
	b.mu.Lock()
	s.Sessions = int64(len(b.sessions))
	if e := b.engine; e != nil {
		s.BytesIn, s.BytesOut = e.BytesIn(), e.BytesOut()
	}
	b.mu.Unlock()
	for q := range s.PublishesInQoS {
		s.PublishesInQoS[q] = b.stats.publishesIn[q].Load()
		s.PublishesOutQoS[q] = b.stats.publishesOut[q].Load()
		s.PublishesIn += s.PublishesInQoS[q]
		s.PublishesOut += s.PublishesOutQoS[q]
	}
	for i := range b.stats.drops {
		s.Drops[DropReason(i).String()] = b.stats.drops[i].Load()
	}
	return s
}

// CountDrop counts a copy dropped outside the broker (the cluster's
// routes to other nodes).
func (b *Broker) CountDrop(r DropReason) { b.stats.drops[r].Add(1) }

// drop counts a dropped copy of m for clientID and tells the hooks.
func (b *Broker) drop(clientID string, m *Message, r DropReason) {
	b.stats.drops[r].Add(1)
	m.settled(false)
	for _, h := range b.dropHooks {
		h.OnDrop(clientID, m, r)
	}
}
