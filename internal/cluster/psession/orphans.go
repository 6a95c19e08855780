package psession

import (
	"strings"
	"time"
)

// sharedOrphans counts, for a QoS 1/2 message on t published on this
// node, the shared subscription groups matching t whose members are all
// persistent sessions held by dead nodes (their records not expired):
// no live node has a member, so the routing finds none and the message is
// kept for no one (docs/cluster.md, "Persistent sessions", shared
// subscriptions). Counters().SharedOrphaned.
func (s *Store) sharedOrphans(t string) {
	alive := s.cfg.Alive
	if alive == nil {
		return
	}
	now := time.Now()
	me := s.me.String()
	var groups map[string]bool // group -> a live node holds a member
	s.idx.shared.Match(t, func(_ string, sub string, e *entry) {
		if expired(e.deadline, now) {
			return
		}
		_, group, _ := strings.Cut(sub, "\x00")
		if groups == nil {
			groups = make(map[string]bool)
		}
		if groups[group] {
			return
		}
		node, inc, _ := strings.Cut(e.saver, "\x00")
		groups[group] = e.saver == "" || e.saver == me || alive(node, inc)
	})
	for _, live := range groups {
		if !live {
			s.stats.SharedOrphaned.Add(1)
		}
	}
}
