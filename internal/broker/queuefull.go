package broker

import (
	"errors"
	"fmt"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// ErrQueueFull is what Publish's done gets, through a *QueueFullError,
// when an AllOrNothing message was refused because a matching session's
// queue had no room for it.
var ErrQueueFull = errors.New("session queue full")

// QueueFullError names the session that refused an AllOrNothing message.
// It matches ErrQueueFull with errors.Is.
type QueueFullError struct{ ClientID string }

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("client %q: %v", e.ClientID, ErrQueueFull)
}

func (e *QueueFullError) Is(target error) bool { return target == ErrQueueFull }

// fullSession returns the id of a session that matches m and whose queue
// has no room for a QoS 1/2 copy of it (MaxQueuedMessages or
// MaxQueuedBytes, whatever the overflow policy), or "" when every matching
// session has room. A shared subscription refuses only when none of its
// members has room. Each session is checked under its own lock, one at a
// time, so the answer may be stale when route runs: an AllOrNothing copy
// is then queued past the limit (enqueueLocked) rather than dropped, so
// nothing is lost and nothing is routed twice.
func (b *Broker) fullSession(m *Message) string {
	type cand struct {
		s     *session
		group int // shared subscription's index + 1; 0 for a plain one
	}
	var cands []cand
	b.subs.Match(m.Topic, func(_ string, s *session, o subOpts) {
		if min(m.QoS, o.QoS) > 0 && !(o.NoLocal && m.Origin != "" && s.id == m.Origin) {
			cands = append(cands, cand{s: s})
		}
	})
	groups := 0
	b.shared.Match(m.Topic, func(_, _ string, members []topic.Entry[*session, subOpts]) {
		groups++
		for _, e := range members {
			if min(m.QoS, e.Value.QoS) > 0 {
				cands = append(cands, cand{s: e.Sub, group: groups})
			}
		}
	})
	n := m.size()
	groupFull := make([]string, groups+1) // a full member's id, per group
	roomIn := make([]bool, groups+1)      // a member has room, per group
	for _, c := range cands {
		full := c.s.noRoom(m, n)
		if c.group == 0 {
			if full {
				return c.s.id
			}
			continue
		}
		if full && groupFull[c.group] == "" {
			groupFull[c.group] = c.s.id
		}
		roomIn[c.group] = roomIn[c.group] || !full
	}
	for g := 1; g <= groups; g++ {
		if !roomIn[g] && groupFull[g] != "" {
			return groupFull[g]
		}
	}
	return ""
}

// noRoom says whether enqueueLocked would refuse (or, with drop_oldest,
// evict for) a copy of m of n bytes. A session whose client may not
// receive m never gets a copy, so it has room.
func (s *session) noRoom(m *Message, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone || s.qlenLocked() == 0 || !s.queueFullLocked(n) {
		return false
	}
	az := s.b.opts.Authorizer
	return az == nil || s.info == nil || az.CanReceive(s.info, m) == nil
}

// HasSession says whether a session of clientID exists (connected, or
// offline and not expired).
func (b *Broker) HasSession(clientID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.sessions[clientID]
	return ok
}
