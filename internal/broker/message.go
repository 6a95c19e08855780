package broker

import (
	"time"
	"unsafe"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Message is an application message as routed by the broker. It is shared
// by every subscriber it is delivered to and must not be modified once
// handed to the broker (Payload and the strings may alias a packet buffer).
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props are the PUBLISH properties that travel with the message: payload
	// format, content type, response topic, correlation data and user
	// properties [MQTT-3.3.2-*]. Topic Alias, Subscription Identifiers and
	// Message Expiry Interval are per hop and ignored here (see Expiry).
	// nil when it has none (most messages): a packet.Properties is most of
	// a message's size, and every routed message is allocated. Like the
	// message, never modified once handed to the broker; read it through
	// Properties.
	Props *packet.Properties
	// Origin is the publishing client's id, for no-local; empty when injected.
	Origin string
	// Expiry is the Unix time in nanoseconds after which the message must not
	// be delivered; 0 means never.
	Expiry int64
	// Local keeps the message on this node: remote routes do not see it.
	Local bool
	// AllOrNothing (Publish only) refuses the message when a matching
	// session's queue is full instead of dropping that copy: nothing is
	// routed and done gets a *QueueFullError (ErrQueueFull) before
	// Publish returns. See Publish.
	AllOrNothing bool
	// Keep (Publish only) marks the queued copies of m, like those of an
	// AllOrNothing message, as never evicted by queue_overflow:
	// drop_oldest; unlike AllOrNothing, a session whose queue is full
	// (of kept copies) drops its copy, counted queue_full.
	Keep bool
	// Hold (Publish only, with Keep or AllOrNothing) keeps a copy for
	// another node of the cluster that does not accept it in time (no
	// answer within ack_timeout, silent, its route full) and sends it
	// again until that node accepts it or is known dead, for up to Hold;
	// done waits meanwhile. 0: not held (the publish fails). The Kafka
	// bridge's commands set it to their max_stall.
	Hold time.Duration
	// Forwarded marks a message another node routed and the cluster
	// injected here (with Local): Retain then only sets RETAIN for
	// retain-as-published subscriptions; the message is not stored as
	// retained, as retained messages replicate on their own.
	Forwarded bool
	// Share, on a Forwarded message, names the shared subscription of
	// this node it is for: it goes to one member of it and to nobody
	// else (the publisher's node picked this node's turn).
	Share *Share
	// Stored marks a message written to the cluster's SessionStore: every
	// node gives it to its persistent sessions from the store's log, not
	// from the routing pass (csession.go).
	Stored bool
	// settle tells the node that sent a shared subscription's copy how it
	// ended (DeliverShared); nil for every other message.
	settle func(ok bool)
}

// noProps is what Properties returns for a message without any.
var noProps packet.Properties

// Properties is m's properties, never nil: read-only, a message without
// Props shares one empty set.
func (m *Message) Properties() *packet.Properties {
	if m.Props == nil {
		return &noProps
	}
	return m.Props
}

// Share names a shared subscription: $share/Group/Filter.
type Share struct{ Group, Filter string }

// userPropSize is what each user property costs besides its strings.
const userPropSize = int(unsafe.Sizeof(packet.UserProperty{}))

// size is the bytes m keeps: its topic, payload and the strings of its
// properties, and each user property's slot. A message from a client's
// PUBLISH aliases the packet's body, which holds exactly these (plus a few
// bytes of lengths and per-hop properties), so size is also what it pins.
// The retained and queued caps count it.
func (m *Message) size() int {
	p := m.Properties()
	n := len(m.Topic) + len(m.Payload) + len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData)
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value) + userPropSize
	}
	return n
}

// expired reports whether m's expiry has passed at now (Unix nanoseconds).
func (m *Message) expired(now int64) bool { return m.Expiry != 0 && now >= m.Expiry }

// remaining is the Message Expiry Interval to send at now, rounded up, and
// whether the message carries one [MQTT-3.3.2-6].
func (m *Message) remaining(now int64) (uint32, bool) {
	if m.Expiry == 0 {
		return 0, false
	}
	d := m.Expiry - now
	if d <= 0 {
		return 0, true
	}
	s := (d + int64(time.Second) - 1) / int64(time.Second)
	if s > 0xFFFFFFFF {
		s = 0xFFFFFFFF
	}
	return uint32(s), true
}

// forwardProps is the set of PUBLISH properties a message keeps from hop to hop.
const forwardProps = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType |
	1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData | 1<<packet.PropUser

// cleanProps strips the per-hop properties from an inbound PUBLISH's set.
func cleanProps(p *packet.Properties) {
	p.Present &= forwardProps
	p.TopicAlias = 0
	p.SubscriptionIDs = nil
	p.MessageExpiry = 0
}

// messageProps is a message's Props made of an inbound set: a copy
// without the per-hop properties, nil when none is left.
func messageProps(p *packet.Properties) *packet.Properties {
	if p.Present&forwardProps == 0 {
		return nil
	}
	q := *p
	cleanProps(&q)
	return &q
}
