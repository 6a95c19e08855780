package topic

import "strings"

// node is one level of a filter trie. Exact levels hang off children, the
// wildcards off plus and hash so that matching never looks them up by name.
// val is what the index keeps for the filter that ends here.
type node[T any] struct {
	parent   *node[T]
	level    string // key in parent; "+" or "#" for the wildcard children
	filter   string // the whole filter this node ends, for callbacks
	children map[string]*node[T]
	plus     *node[T]
	hash     *node[T]
	val      T
}

// lookup returns the node for filter, or nil.
func (n *node[T]) lookup(filter string) *node[T] {
	for {
		level, rest, more := strings.Cut(filter, "/")
		switch level {
		case "+":
			n = n.plus
		case "#":
			n = n.hash
		default:
			n = n.children[level]
		}
		if n == nil || !more {
			return n
		}
		filter = rest
	}
}

// insert returns the node for filter, creating the missing path. The filter
// is cloned before any of it is kept, so it may alias a packet buffer.
func (n *node[T]) insert(filter string) *node[T] {
	if c := n.lookup(filter); c != nil {
		if c.filter == "" { // created on the way to a longer filter
			c.filter = strings.Clone(filter)
		}
		return c
	}
	filter = strings.Clone(filter)
	whole := filter
	for {
		level, rest, more := strings.Cut(filter, "/")
		n = n.child(level)
		if !more {
			n.filter = whole
			return n
		}
		filter = rest
	}
}

// child returns the child for level, creating it.
func (n *node[T]) child(level string) *node[T] {
	var slot **node[T]
	switch level {
	case "+":
		slot = &n.plus
	case "#":
		slot = &n.hash
	default:
		if c := n.children[level]; c != nil {
			return c
		}
		c := &node[T]{parent: n, level: level}
		if n.children == nil {
			n.children = make(map[string]*node[T])
		}
		n.children[level] = c
		return c
	}
	if *slot == nil {
		*slot = &node[T]{parent: n, level: level}
	}
	return *slot
}

// prune unlinks n and then its ancestors for as long as they hold nothing:
// no value (empty reports that) and no children.
func (n *node[T]) prune(empty func(*T) bool) {
	for n.parent != nil && empty(&n.val) && len(n.children) == 0 && n.plus == nil && n.hash == nil {
		p := n.parent
		switch {
		case p.plus == n:
			p.plus = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.children, n.level)
			if len(p.children) == 0 {
				p.children = nil
			}
		}
		n.parent = nil
		n = p
	}
}

// match calls fn for every node below root whose filter matches topic,
// skipping wildcards at the first level for a '$' topic [MQTT-4.7.2-1]. fn
// may be called for nodes that hold no value.
func (n *node[T]) match(topic string, fn func(*node[T])) {
	wild := !IsSys(topic)
	if wild && n.hash != nil {
		fn(n.hash)
	}
	level, rest, more := strings.Cut(topic, "/")
	if wild && n.plus != nil {
		n.plus.matchRest(rest, more, fn)
	}
	if c := n.children[level]; c != nil {
		c.matchRest(rest, more, fn)
	}
}

// matchRest continues match below the first level: n has consumed the
// levels before topic, and more reports whether any remain.
func (n *node[T]) matchRest(topic string, more bool, fn func(*node[T])) {
	if n.hash != nil {
		// '#' also matches the parent level: "a/#" matches "a"
		// [MQTT-4.7.1-2].
		fn(n.hash)
	}
	if !more {
		fn(n)
		return
	}
	level, rest, more := strings.Cut(topic, "/")
	if n.plus != nil {
		n.plus.matchRest(rest, more, fn)
	}
	if c := n.children[level]; c != nil {
		c.matchRest(rest, more, fn)
	}
}

// each calls fn for n and every node below it, depth first, until fn
// returns false; it reports whether it went through all of them.
func (n *node[T]) each(fn func(*node[T]) bool) bool {
	if !fn(n) {
		return false
	}
	for _, c := range n.children {
		if !c.each(fn) {
			return false
		}
	}
	return (n.plus == nil || n.plus.each(fn)) && (n.hash == nil || n.hash.each(fn))
}
