package broker

import (
	"context"
	"errors"
)

// SessionStore keeps a cluster's persistent sessions and the QoS 1 and 2
// messages they are owed, replicated on the cores, so that a session
// survives the loss of the node its client was connected to
// (docs/cluster.md, "Persistent sessions"). A node without a cluster has
// none: its persistent sessions live in its Store.
//
// A message is stored once, in one replicated log, whatever the number of
// sessions it is for; each session keeps a cursor into the log. Each node
// reads the log with one reader (Deliver), never one per session; a session
// that resumes on a node reads what it missed with Backlog.
type SessionStore interface {
	// Persistent reports whether a message on topic must be stored: a
	// persistent session of the cluster (on any node, connected or not,
	// its node alive or not) has a matching subscription, as the store's
	// replicated index of session records knows it. It is a local lookup.
	// Shared subscriptions ($share/group/filter) do not count: a message
	// for a shared subscription goes to one member, and a persistent
	// member's copy is written for it alone (StoreFor).
	Persistent(topic string) bool

	// Store writes m to the log once. done gets its sequence number once a
	// majority of the cores have it on disk, or an error (then it may or
	// may not be stored; the publisher must not be acknowledged). Messages
	// stored by one goroutine get increasing sequence numbers in call
	// order. Store must not block; done runs on a goroutine of the store
	// and must not block.
	Store(m *Message, done func(seq uint64, err error))

	// StoreFor writes m to the log for one session only: a message routed
	// to a persistent session of this node that its publisher's node did
	// not store (its index did not have the subscription yet). Backlog
	// and Deliver give it to clientID only. As Store otherwise.
	StoreFor(clientID string, m *Message, done func(seq uint64, err error))

	// Deliver starts this node's reader of the log: fn is called for every
	// message stored after Deliver was called, by any node, in sequence
	// order, on one goroutine of the store; clientID is the session of a
	// StoreFor message and empty otherwise. fn must not block for long.
	// Deliver is called once, before the node accepts clients. A store
	// that is a ReaderHolder may call fn(seq, "", nil) when its reader
	// starts: no message up to seq is for this node's sessions.
	Deliver(fn func(seq uint64, clientID string, m *Message))

	// Load reads the record of clientID's session: nil, nil when there is
	// none (or it expired). It reads at the leader: a record saved on any
	// node before Load is seen. The record's Rev is the revision of a
	// write Load makes of it at a majority: Saves of a node that loaded
	// it before (a node that held the session) fail from then on.
	Load(ctx context.Context, clientID string) (*SessionRecord, error)
	// Save writes rec, replacing clientID's record, on condition that the
	// record is still at revision rec.Rev (0: unconditionally, a new
	// session); done gets the record's new revision once a majority of
	// the cores have it on disk, or ErrSessionMoved (errors.Is) when the
	// record is at another revision: another node loaded (or a sweep
	// deleted) it, and this node no longer holds the session. Saves of
	// one client id take effect in call order; a caller that needs the
	// condition waits for one Save's revision before the next. It must
	// not block.
	Save(rec *SessionRecord, done func(rev uint64, err error))
	// Delete removes clientID's record (its session ended) on condition
	// that it is still at revision rev, the one the deleter last saw
	// (its Load's or last Save's; 0: unconditionally, a clean start that
	// loaded nothing): done gets ErrSessionMoved when the record is at
	// another revision, and the record (the new holder's) stays. As Save
	// otherwise.
	Delete(clientID string, rev uint64, done func(error))

	// Backlog calls fn in sequence order for every message in the log
	// with from < seq <= to that was stored (Store) on a topic matching
	// one of filters (MQTT filters; a shared one, $share/group/filter,
	// matches none: its messages are the member's StoreFor ones) or was
	// stored for clientID (StoreFor); fn's clientID, as Deliver's, is
	// clientID for the latter and empty for the former. dropped counts
	// the messages of that range the log no longer holds (removed by its
	// limits): the caller counts them as lost with their reason.
	Backlog(ctx context.Context, clientID string, filters []string, from, to uint64,
		fn func(seq uint64, clientID string, m *Message) error) (dropped uint64, err error)
	// Get returns the message stored at seq (for redelivery of an
	// in-flight message): an error wrapping ErrMessageGone when the log
	// no longer holds it, another error when it cannot tell now.
	Get(ctx context.Context, seq uint64) (*Message, error)
	// Head is the sequence of the last message Deliver's fn was called
	// with; a session that resumes reads its Backlog up to Head and takes
	// what follows from Deliver.
	Head() uint64
}

// ReaderHolder is what a SessionStore may also implement: its reader of the
// log (Deliver) runs only while held, so that a node none of whose
// persistent sessions subscribes to anything does not read the log. The
// broker holds it once per persistent session with a subscription (or
// about to get one, or resuming with some) until the session ends here
// (readerHeld).
type ReaderHolder interface {
	// HoldReader makes sure the reader runs and keeps it running until
	// the matching ReleaseReader: it returns once every message stored
	// from then on will be given to Deliver's fn, and Head is where the
	// reader is. It may wait for the log's leader (not while the caller
	// holds a lock fn takes); an error means the hold was not taken.
	HoldReader(ctx context.Context) error
	// ReleaseReader gives back one hold; it never waits.
	ReleaseReader()
}

// ErrSessionMoved fails a Save whose record is no longer at the revision
// it was written on (SessionStore.Save): the session is another node's.
var ErrSessionMoved = errors.New("broker: session record changed: the session moved to another node")

// ErrMessageGone fails a SessionStore.Get of a message the log no longer
// holds (removed by its limits): the session is not owed it any more. Any
// other error of Get (the store unreachable, no leader) says nothing of
// the message.
var ErrMessageGone = errors.New("broker: message no longer in the log")

// SessionRecord is a persistent session as the SessionStore keeps it.
type SessionRecord struct {
	ClientID string
	// Rev is the record's revision in the store: set by Load; Save
	// writes on condition that the record is still at it.
	Rev uint64
	// Filters are the session's subscriptions (shared ones as
	// $share/group/filter), for the store's index and for Backlog.
	Filters []string
	// Expiry is the Session Expiry Interval in seconds (0xFFFFFFFF:
	// never); DiscAt the Unix second its client left, 0 while connected.
	// A record whose client left more than Expiry ago is expired: Load
	// does not return it and the index leaves it out.
	Expiry uint32
	DiscAt int64
	// Cursor: every message of the log up to Cursor that the session is
	// owed has been delivered and acknowledged (or dropped and counted).
	Cursor uint64
	// Data is the broker's encoding of the rest of the session: protocol
	// version, owner, subscription options, in-flight messages (their
	// sequence numbers, packet ids and QoS 2 states).
	Data []byte
}
