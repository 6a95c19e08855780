// Package topic validates MQTT topic names and filters and indexes them: Index
// finds the subscriptions that match a published topic, SharedIndex does the
// same for shared subscriptions ($share/{group}/{filter}) and keeps a
// round-robin turn per group, and Retained finds the retained messages that
// match a new subscription's filter.
//
// All three are tries over topic levels guarded by an internal RWMutex: any
// number of goroutines may Match at once, writers take the lock exclusively.
// A callback passed to Match runs with the read lock held, so it must not call
// back into the same index (a waiting writer would deadlock it) and must not
// keep the slices it is given. Each index has one lock and takes no other,
// so the lock order is: index lock, then whatever a callback takes. A caller
// must not hold a lock that its Match callbacks take while it calls
// Subscribe, Unsubscribe, Set or Delete on the same index.
//
// The indexes assume their input was validated with ValidName, ValidFilter or
// ParseShared; they do not validate again on the hot path.
package topic
