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
// filter rarely has more than a few groups, so a scan of the list finds one
// until there are more than posThreshold; then pos does.
type groups[S comparable, V any] struct {
	list []*group[S, V]
	pos  map[string]int // index into list; nil while list is short
}

// group is one shared subscription.
type group[S comparable, V any] struct {
	name    string
	members entries[S, V]
	turn    atomic.Uint64 // advanced under the read lock
}

func (g *groups[S, V]) find(name string) int {
	if g.pos != nil {
		if i, ok := g.pos[name]; ok {
			return i
		}
		return -1
	}
	for i, x := range g.list {
		if x.name == name {
			return i
		}
	}
	return -1
}

// add appends a new group and returns its index.
func (g *groups[S, V]) add(name string) int {
	g.list = append(g.list, &group[S, V]{name: strings.Clone(name)})
	i := len(g.list) - 1
	if g.pos != nil {
		g.pos[g.list[i].name] = i
	} else if len(g.list) > posThreshold {
		g.pos = make(map[string]int, len(g.list))
		for j, x := range g.list {
			g.pos[x.name] = j
		}
	}
	return i
}

// remove deletes the group at i, keeping the order of the rest.
func (g *groups[S, V]) remove(i int) {
	name := g.list[i].name
	copy(g.list[i:], g.list[i+1:])
	g.list[len(g.list)-1] = nil
	g.list = g.list[:len(g.list)-1]
	switch {
	case len(g.list) == 0:
		g.list, g.pos = nil, nil
	case g.pos != nil && len(g.list) <= posThreshold/2:
		g.pos = nil
	case g.pos != nil:
		delete(g.pos, name)
		for j := i; j < len(g.list); j++ {
			g.pos[g.list[j].name] = j
		}
	}
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
		i = gs.add(group)
	}
	existed = gs.list[i].members.set(sub, v)
	if !existed {
		x.n++
	}
	return existed
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
		gs.remove(i)
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

// Range calls fn for every shared subscription with its members in
// subscription order, in no particular order of subscriptions, until fn
// returns false. It is for listing and snapshots, not the hot path. fn runs
// under the read lock and must not call into x nor keep or modify members.
func (x *SharedIndex[S, V]) Range(fn func(group, filter string, members []Entry[S, V]) bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.each(func(n *node[groups[S, V]]) bool {
		for _, g := range n.val.list {
			if !fn(g.name, n.filter, g.members.list) {
				return false
			}
		}
		return true
	})
}

// Len returns the number of (group, filter, subscriber) triples.
func (x *SharedIndex[S, V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}
