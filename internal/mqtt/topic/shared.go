package topic

import (
	"strings"
	"sync"
	"sync/atomic"
)

// SharedIndex maps shared subscriptions, ("$share/{group}/{filter}" split by
// ParseShared), to their members. Each (group, filter) is one shared
// subscription whose members take turns [MQTT-4.8.2]: Match reports the
// member list in subscription order, MatchTurn adds a turn counter for
// picking one, Next picks one outside a callback.
// The zero value is an empty index ready to use; a SharedIndex must not be
// copied after first use.
//
// SharedIndex is safe for concurrent use. Match holds the read lock while it
// calls its callback; the callback must not call any method of the same
// SharedIndex nor keep or modify the member slice.
type SharedIndex[S comparable, V any] struct {
	mu   sync.RWMutex
	root node[groups[S, V]]
	n    int // (group, filter, subscriber) triples
}

// groups is the shared subscriptions of one filter, in creation order. A
// filter rarely has more than a few groups, so a slice beats a map.
type groups[S comparable, V any] struct {
	list []*group[S, V]
}

// group is one shared subscription.
type group[S comparable, V any] struct {
	name    string
	members entries[S, V]
	turn    atomic.Uint64 // advanced under the read lock
}

func (g *groups[S, V]) find(name string) int {
	for i, x := range g.list {
		if x.name == name {
			return i
		}
	}
	return -1
}

func (g *groups[S, V]) empty() bool { return len(g.list) == 0 }

// NewSharedIndex returns an empty SharedIndex.
func NewSharedIndex[S comparable, V any]() *SharedIndex[S, V] {
	return new(SharedIndex[S, V])
}

// Subscribe adds sub to the shared subscription (group, filter) with value
// v, or replaces the value if sub is already a member, and reports whether it
// was. group and filter are as returned by ParseShared.
func (x *SharedIndex[S, V]) Subscribe(group, filter string, sub S, v V) (existed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	gs := &x.root.insert(filter).val
	i := gs.find(group)
	if i < 0 {
		gs.list = append(gs.list, newGroup[S, V](group))
		i = len(gs.list) - 1
	}
	existed = gs.list[i].members.set(sub, v)
	if !existed {
		x.n++
	}
	return existed
}

func newGroup[S comparable, V any](name string) *group[S, V] {
	return &group[S, V]{name: strings.Clone(name)}
}

// Unsubscribe removes sub from the shared subscription (group, filter) and
// reports whether it was a member. The remaining members keep their order.
func (x *SharedIndex[S, V]) Unsubscribe(group, filter string, sub S) (existed bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.root.lookup(filter)
	if n == nil {
		return false
	}
	gs := &n.val
	i := gs.find(group)
	if i < 0 || !gs.list[i].members.remove(sub) {
		return false
	}
	x.n--
	if gs.list[i].members.empty() {
		copy(gs.list[i:], gs.list[i+1:])
		gs.list[len(gs.list)-1] = nil
		gs.list = gs.list[:len(gs.list)-1]
		if len(gs.list) == 0 {
			gs.list = nil
		}
		n.prune((*groups[S, V]).empty)
	}
	return true
}

// Match calls fn for every shared subscription whose filter matches the
// valid topic name, with its members in subscription order. Filters starting
// with a wildcard do not match topics starting with '$' [MQTT-4.7.2-1]. fn
// runs under the read lock and must not call into x nor keep or modify
// members. Match does not allocate. To pick members round-robin use
// MatchTurn.
func (x *SharedIndex[S, V]) Match(topic string, fn func(group, filter string, members []Entry[S, V])) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.match(topic, func(n *node[groups[S, V]]) {
		for _, g := range n.val.list {
			fn(g.name, n.filter, g.members.list)
		}
	})
}

// MatchTurn is Match with a turn for each shared subscription: a counter
// that advances by one on every call for that (group, filter), so
// members[turn%len(members)] delivers round-robin, and
// members[(turn+k)%len(members)] for k = 1, 2... finds the next member when
// one is offline. MatchTurn and Next share the counter;
// Match leaves it alone.
func (x *SharedIndex[S, V]) MatchTurn(topic string, fn func(group, filter string, members []Entry[S, V], turn uint64)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.match(topic, func(n *node[groups[S, V]]) {
		for _, g := range n.val.list {
			fn(g.name, n.filter, g.members.list, g.turn.Add(1)-1)
		}
	})
}

// Next returns the member of the shared subscription (group, filter) whose
// turn it is and advances the turn, or ok false if there is none. It takes
// the read lock, so it must not be called from a Match callback: use the
// turn passed there instead.
func (x *SharedIndex[S, V]) Next(group, filter string) (e Entry[S, V], ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.root.lookup(filter)
	if n == nil {
		return e, false
	}
	i := n.val.find(group)
	if i < 0 {
		return e, false
	}
	g := n.val.list[i]
	return g.members.list[(g.turn.Add(1)-1)%uint64(len(g.members.list))], true
}

// Members returns a copy of the members of the shared subscription (group,
// filter) in subscription order.
func (x *SharedIndex[S, V]) Members(group, filter string) []Entry[S, V] {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.root.lookup(filter)
	if n == nil {
		return nil
	}
	i := n.val.find(group)
	if i < 0 {
		return nil
	}
	return append([]Entry[S, V](nil), n.val.list[i].members.list...)
}

// Len returns the number of (group, filter, subscriber) triples.
func (x *SharedIndex[S, V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}
