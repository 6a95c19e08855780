package broker

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// ClientInfo describes a connected (or, for offline sessions, formerly
// connected) client to the seams. It is immutable once the client is
// connected; seams must not modify it, except through Attach.
type ClientInfo struct {
	ClientID string
	Username string
	Version  packet.Version
	Remote   net.Addr
	Listener string
	TLS      *tls.ConnectionState
	// AuthState is what the Authenticator keeps about the client to judge
	// its deliveries while it is not connected: it is stored with a
	// persistent session and restored with it after a restart, so that an
	// Authorizer's CanReceive can decide before the client authenticates
	// again. Authenticate may set it on CONNECT; nil for none.
	AuthState []byte
	// Owner is the authenticated identity the client's session belongs to
	// (a users-file username, a certificate's name, a JWT's subject); empty
	// for an anonymous client. The Authenticator sets it on CONNECT. A
	// session is created by its owner, and a client of another identity
	// presenting its client id is refused (docs/security.md, "Ownership of
	// client ids and sessions").
	Owner string
	// Superuser, set by the Authenticator, lets the client take over a
	// session of another owner when Options.SuperuserTakeover is on.
	Superuser bool

	attached atomic.Pointer[attachment]
}

type attachment struct{ v any }

// Attach keeps v with the client for as long as the ClientInfo lives: the
// Authenticator's state for the Authorizer (an identity, say), which
// CanReceive reads at every delivery and a field gives at the cost of one
// load, where a map keyed by the client costs a lookup. It is the one
// part of a ClientInfo a seam may change, and safe for concurrent use.
func (c *ClientInfo) Attach(v any) { c.attached.Store(&attachment{v}) }

// Attached returns what Attach kept, or nil.
func (c *ClientInfo) Attached() any {
	if a := c.attached.Load(); a != nil {
		return a.v
	}
	return nil
}

// Interceptor sees every inbound PUBLISH after validation and authorization
// and before it is routed or acknowledged. It must call done exactly once, on
// any goroutine: nil routes the message and releases its acknowledgement; a
// packet.Code (or an error wrapping one) fails it with that reason code for a
// v5 client (ErrImplementationSpecific for other errors), while a 3.1.1
// client gets no acknowledgement and retransmits. Messages of one client are
// routed and acknowledged in the order received whatever order done is
// called in, so a slow interceptor slows that publisher only, within its
// Receive Maximum. Intercept must not block; m must not be modified.
type Interceptor interface {
	Intercept(ctx context.Context, c *ClientInfo, m *Message, done func(err error))
}

// Authenticator decides whether a client may connect. Returning a
// packet.Code chooses the CONNACK reason (mapped to a 3.1.1 return code for
// older clients); any other error refuses with 0x87 / 0x05. Accepting, it
// sets c.Owner (and c.Superuser) to who the client is: sessions belong to
// their owners, and an Authenticator that leaves Owner empty makes every
// client anonymous, free to take any session over.
type Authenticator interface {
	Authenticate(ctx context.Context, c *ClientInfo, p *packet.Connect) error
}

// EnhancedAuthenticator is implemented by an Authenticator that supports
// MQTT 5 enhanced authentication [MQTT-4.12]. AuthExchange is called with
// the Authentication Method and each step's Authentication Data (from
// CONNECT, then from AUTH 0x18 packets, or from AUTH 0x19 to
// re-authenticate). It returns the data for the client and whether the
// exchange must continue (AUTH 0x18) or has succeeded; an error ends it with
// that reason code (default 0x87; ErrBadAuthenticationMethod for an unknown
// method). Authenticate is still called on CONNECT once the exchange succeeds.
type EnhancedAuthenticator interface {
	Authenticator
	AuthExchange(ctx context.Context, c *ClientInfo, method string, data []byte) (resp []byte, more bool, err error)
}

// Authorizer decides what a client may do. A nil error allows; a packet.Code
// picks the reason code sent to a v5 client (default ErrNotAuthorized).
type Authorizer interface {
	// CanPublish is called for every inbound PUBLISH and for the will at CONNECT.
	CanPublish(c *ClientInfo, topic string, qos byte, retain bool) error
	// CanSubscribe is called for every filter of a SUBSCRIBE.
	CanSubscribe(c *ClientInfo, filter string, qos byte) error
	// CanReceive is called for every delivery, including retained and will
	// messages, on the routing hot path: it must be fast and must not block.
	CanReceive(c *ClientInfo, m *Message) error
}

// RemoteRoute receives the messages matched by a remote subscription added
// with Broker.SubscribeRemote (the cluster's forwarding hook). Deliver is
// called once per message per route however many of its filters match, on
// the publisher's goroutine: it must not block nor modify m. Messages with
// Local set (those the cluster injected) are not offered to remote routes.
type RemoteRoute interface {
	Deliver(m *Message, qos byte)
}

// CongestedRoute is a RemoteRoute that holds QoS 0 publishers back while
// it is congested (the cluster's route to a node whose backlog is
// growing): after routing a client's QoS 0 message to it, the broker asks
// Congested, and a non-nil channel makes that client's reader wait until
// it is closed (the route has room again), for at most roomWaitMax, before
// it reads on. TCP then slows the client down instead of the route
// dropping what it cannot send. Congested must be fast (it is called for
// every such message), must not block, and returns nil while the route has
// room or is not moving at all (then its messages are dropped as before:
// a node that stopped reading does not hold publishers).
type CongestedRoute interface {
	RemoteRoute
	Congested() <-chan struct{}
}

// AckRemoteRoute is a RemoteRoute whose QoS 1/2 copies are accepted
// later, on another node: the cluster's route to a node. For a QoS 1/2
// message whose acknowledgement waits (a client's PUBLISH, Broker.Publish)
// the broker calls DeliverAck instead of Deliver, and holds the PUBACK or
// PUBREC (or Publish's done) until ack.Done has been called; an error
// fails it as a failed store write does (v5: the reason code; 3.1.1: no
// acknowledgement, the client sends it again). DeliverAck runs on the
// publisher's goroutine, must not block, and must call ack.Done exactly
// once, on any goroutine.
type AckRemoteRoute interface {
	RemoteRoute
	DeliverAck(m *Message, qos byte, ack Acker)
}

// SharedRouter spreads shared subscriptions over the nodes of a cluster:
// for each message, one member in the whole cluster. Set with
// Broker.SetSharedRouter before Start.
type SharedRouter interface {
	// SharedTurn says whose turn it is for a message matching the shared
	// subscription (group, filter): nil for this node (local says whether
	// it has members), or the route to the node to forward it to. It runs
	// on the routing path, under the shared index's lock: fast, no
	// blocking, no calls into the broker.
	SharedTurn(group, filter string, local bool) SharedRoute
	// MatchShared calls fn for each shared subscription of other nodes
	// whose filter matches topic.
	MatchShared(topic string, fn func(group, filter string))
}

// SharedRoute forwards a message for a shared subscription to the node
// whose turn it is. ack, when not nil, is completed once that node has
// accepted it (as AckRemoteRoute.DeliverAck).
type SharedRoute interface {
	DeliverShared(m *Message, share Share, ack Acker)
}

// Acker completes one deferred acknowledgement.
type Acker interface{ Done(err error) }

// Router is where the cluster adds and removes remote subscribers.
type Router interface {
	SubscribeRemote(filter string, qos byte, r RemoteRoute) error
	UnsubscribeRemote(filter string, r RemoteRoute) bool
}

// Hook is an optional event callback: any value implementing one or more of
// the On* interfaces below. Callbacks run synchronously on broker goroutines
// and must not block.
type Hook any

// ConnectHook is told of each accepted connection.
type ConnectHook interface {
	OnConnect(c *ClientInfo, sessionPresent bool)
}

// DisconnectHook is told of each connection that ends after CONNACK; err is
// nil for a normal DISCONNECT.
type DisconnectHook interface {
	OnDisconnect(c *ClientInfo, err error)
}

// SubscribeHook is told of each granted subscription.
type SubscribeHook interface {
	OnSubscribe(c *ClientInfo, filter string, qos byte)
}

// UnsubscribeHook is told of each removed subscription.
type UnsubscribeHook interface {
	OnUnsubscribe(c *ClientInfo, filter string)
}

// DropHook is told of each message dropped for a client, with the reason.
// clientID is empty when the message was dropped before routing.
type DropHook interface {
	OnDrop(clientID string, m *Message, reason DropReason)
}

// SessionExpiredHook is told when a session expires or is discarded.
type SessionExpiredHook interface{ OnSessionExpired(clientID string) }

var _ Router = (*Broker)(nil)
