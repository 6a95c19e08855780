package topic

import "sync"

// Index maps topic filters to subscribers: Match finds every (filter,
// subscriber) pair whose filter matches a published topic. The zero value is
// an empty index ready to use; an Index must not be copied after first use.
//
// Index is safe for concurrent use. Match holds the read lock while it calls
// its callback, so many Matches run at once; the callback must not call any
// method of the same Index.
type Index[S comparable, V any] struct {
	mu   sync.RWMutex
	root node[entries[S, V]]
	n    int // (filter, subscriber) pairs
}

// NewIndex returns an empty Index.
func NewIndex[S comparable, V any]() *Index[S, V] {
	return new(Index[S, V])
}

// Subscribe adds sub to the valid, non-shared filter with value v, or
// replaces the value if sub is already subscribed to filter, and reports
// whether it was.
func (x *Index[S, V]) Subscribe(filter string, sub S, v V) (existed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	existed = x.root.insert(filter).val.set(sub, v)
	if !existed {
		x.n++
	}
	return existed
}

// Unsubscribe removes sub from filter and reports whether it was subscribed.
func (x *Index[S, V]) Unsubscribe(filter string, sub S) (existed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.root.lookup(filter)
	if n == nil || !n.val.remove(sub) {
		return false
	}
	x.n--
	n.prune((*entries[S, V]).empty)
	return true
}

// Get returns the value sub subscribed to filter with.
func (x *Index[S, V]) Get(filter string, sub S) (v V, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if n := x.root.lookup(filter); n != nil {
		if i := n.val.find(sub); i >= 0 {
			return n.val.list[i].Value, true
		}
	}
	return v, false
}

// Match calls fn for every (filter, subscriber) pair whose filter matches
// the valid topic name, once per pair: a subscriber with overlapping filters
// is reported once for each. Filters starting with a wildcard do not match
// topics starting with '$' [MQTT-4.7.2-1]. fn runs under the read lock and
// must not call into x. Match does not allocate.
func (x *Index[S, V]) Match(topic string, fn func(filter string, sub S, v V)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.match(topic, func(n *node[entries[S, V]]) {
		for i := range n.val.list {
			e := &n.val.list[i]
			fn(n.filter, e.Sub, e.Value)
		}
	})
}

// Range calls fn for every (filter, subscriber) pair, in no particular
// order, until fn returns false. It is for listing and snapshots, not the
// hot path. fn runs under the read lock and must not call into x.
func (x *Index[S, V]) Range(fn func(filter string, sub S, v V) bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.each(func(n *node[entries[S, V]]) bool {
		for i := range n.val.list {
			if e := &n.val.list[i]; !fn(n.filter, e.Sub, e.Value) {
				return false
			}
		}
		return true
	})
}

// Len returns the number of (filter, subscriber) pairs.
func (x *Index[S, V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}
