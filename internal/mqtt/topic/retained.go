package topic

import (
	"strings"
	"sync"
)

// Retained maps topic names to their retained message. Match walks a trie of
// topic levels, so finding the messages for a new subscription costs the
// size of the matching subtrees, not the number of retained topics. The zero
// value is empty and ready to use; a Retained must not be copied after first
// use.
//
// Retained is safe for concurrent use. Match holds the read lock while it
// calls its callback; the callback must not call any method of the same
// Retained.
type Retained[M any] struct {
	mu   sync.RWMutex
	root rnode[M]
	n    int
}

// rnode is one level of the retained trie; set reports whether a message is
// retained at exactly this topic.
type rnode[M any] struct {
	parent   *rnode[M]
	level    string
	topic    string
	children map[string]*rnode[M]
	m        M
	set      bool
}

// NewRetained returns an empty Retained.
func NewRetained[M any]() *Retained[M] {
	return new(Retained[M])
}

// Set retains m for the valid topic name, replacing any message retained
// there, and reports whether one was.
func (r *Retained[M]) Set(topic string, m M) (replaced bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.root.lookup(topic)
	if n == nil {
		topic = strings.Clone(topic) // it may alias a packet buffer
		n = &r.root
		for rest, more := topic, true; more; {
			var level string
			level, rest, more = strings.Cut(rest, "/")
			c := n.children[level]
			if c == nil {
				c = &rnode[M]{parent: n, level: level}
				if n.children == nil {
					n.children = make(map[string]*rnode[M])
				}
				n.children[level] = c
			}
			n = c
		}
		n.topic = topic
	} else if n.topic == "" { // created on the way to a longer topic
		n.topic = strings.Clone(topic)
	}
	replaced = n.set
	n.m, n.set = m, true
	if !replaced {
		r.n++
	}
	return replaced
}

// Delete removes the message retained for topic and reports whether there
// was one.
func (r *Retained[M]) Delete(topic string) (existed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.root.lookup(topic)
	if n == nil || !n.set {
		return false
	}
	var zero M
	n.m, n.set = zero, false
	r.n--
	for n.parent != nil && !n.set && len(n.children) == 0 {
		p := n.parent
		delete(p.children, n.level)
		if len(p.children) == 0 {
			p.children = nil
		}
		n.parent = nil
		n = p
	}
	return true
}

// Get returns the message retained for topic.
func (r *Retained[M]) Get(topic string) (m M, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.root.lookup(topic); n != nil && n.set {
		return n.m, true
	}
	return m, false
}

// Len returns the number of retained messages.
func (r *Retained[M]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// Range calls fn for every retained message, in no particular order, until
// fn returns false. It is for listing and snapshots. fn runs under the read
// lock and must not call into r.
func (r *Retained[M]) Range(fn func(topic string, m M) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.root.each(fn)
}

// Match calls fn for every retained message whose topic matches the valid
// filter. A filter starting with a wildcard does not match topics starting
// with '$' [MQTT-4.7.2-1]. The order is unspecified. fn runs under the read
// lock and must not call into r.
func (r *Retained[M]) Match(filter string, fn func(topic string, m M)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	r.root.match(filter, true, fn)
}

func (n *rnode[M]) lookup(topic string) *rnode[M] {
	for {
		level, rest, more := strings.Cut(topic, "/")
		if n = n.children[level]; n == nil || !more {
			return n
		}
		topic = rest
	}
}

// match reports the retained messages below n matching filter; first is set
// at the root, where wildcards skip '$' topics.
func (n *rnode[M]) match(filter string, first bool, fn func(string, M)) {
	level, rest, more := strings.Cut(filter, "/")
	switch level {
	case "#":
		// '#' matches the parent level too: "a/#" matches "a"
		// [MQTT-4.7.1-2].
		if n.set {
			fn(n.topic, n.m)
		}
		for l, c := range n.children {
			if !first || !IsSys(l) {
				c.all(fn)
			}
		}
	case "+":
		for l, c := range n.children {
			if !first || !IsSys(l) {
				c.matched(rest, more, fn)
			}
		}
	default:
		if c := n.children[level]; c != nil {
			c.matched(rest, more, fn)
		}
	}
}

// matched continues match at n, which matched a level of the filter.
func (n *rnode[M]) matched(rest string, more bool, fn func(string, M)) {
	if more {
		n.match(rest, false, fn)
	} else if n.set {
		fn(n.topic, n.m)
	}
}

// all reports every message at or below n.
func (n *rnode[M]) all(fn func(string, M)) {
	if n.set {
		fn(n.topic, n.m)
	}
	for _, c := range n.children {
		c.all(fn)
	}
}

// each is all that can stop: it reports whether fn returned true throughout.
func (n *rnode[M]) each(fn func(string, M) bool) bool {
	if n.set && !fn(n.topic, n.m) {
		return false
	}
	for _, c := range n.children {
		if !c.each(fn) {
			return false
		}
	}
	return true
}
