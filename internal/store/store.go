// Package store keeps what must survive a restart: persistent sessions, their
// queued and in-flight messages, retained messages and pending delayed wills.
//
// The broker sees only the Store interface: a bucketed key-value store with
// ordered, group-committed, asynchronous writes. The single-node implementation
// is Bolt (bbolt on local disk); Memory serves tests and nodes without a data
// directory; the cluster will supply one backed by NATS JetStream KV. Values are
// opaque bytes encoded by the broker.
package store

import "errors"

// Bucket names a keyspace.
type Bucket string

// The broker's buckets.
const (
	Sessions Bucket = "sessions" // key: client id; value: session state
	Messages Bucket = "messages" // key: MessageKey(client id, seq); value: a queued or in-flight message
	Bodies   Bucket = "bodies"   // key: BodyKey(seq); value: a message body that Messages records share
	Retained Bucket = "retained" // key: topic name; value: the retained message
	Wills    Bucket = "wills"    // key: client id; value: a will waiting for its delay
)

// OpKind says what an Op does.
type OpKind uint8

// Op kinds.
const (
	Put          OpKind = iota + 1 // set Key to Value
	Delete                         // remove Key
	DeletePrefix                   // remove every key starting with Key
)

// Op is one change to one bucket.
type Op struct {
	Kind   OpKind
	Bucket Bucket
	Key    string
	Value  []byte
}

// Store is durable broker state.
//
// Apply is asynchronous: it queues ops and returns at once. Ops take effect in
// the order Apply was called, across all callers. done, if not nil, is called
// exactly once after the ops are durable (fsynced, for disk stores) or have
// failed; callbacks run in Apply order, on a goroutine of the store, and must
// not block. Concurrent Apply calls are committed together (group commit).
type Store interface {
	Apply(ops []Op, done func(error))
	// Scan calls fn for every key in bucket that starts with prefix, in key
	// order, with every Apply made before the call visible. fn must not
	// retain value. Scan is for loading state at start-up, not for hot paths.
	Scan(bucket Bucket, prefix string, fn func(key string, value []byte) error) error
	// Sync returns once every op applied before it is durable.
	Sync() error
	// Close syncs and releases the store; Apply after Close fails its ops
	// with ErrClosed.
	Close() error
}

// ErrClosed is returned for ops applied to a closed store.
var ErrClosed = errors.New("store: closed")

// MessageKey is the Messages key for a session's message: the client id, a
// zero byte, and seq big-endian, so a session's messages scan in seq order
// and DeletePrefix(SessionPrefix(id)) removes them all.
func MessageKey(clientID string, seq uint64) string {
	b := make([]byte, 0, len(clientID)+9)
	b = append(b, clientID...)
	b = append(b, 0)
	for i := 56; i >= 0; i -= 8 {
		b = append(b, byte(seq>>i))
	}
	return string(b)
}

// BodyKey is the Bodies key of the body numbered seq: seq big-endian, so
// bodies scan in the order they were numbered.
func BodyKey(seq uint64) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(seq >> (56 - 8*i))
	}
	return string(b[:])
}

// SessionPrefix is the prefix of every Messages key of a client id.
func SessionPrefix(clientID string) string { return clientID + "\x00" }
