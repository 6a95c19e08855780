package broker

import (
	"sort"
	"time"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// The read side of the admin API: snapshots of sessions, subscriptions and
// retained messages, taken without holding more than one session's lock at
// a time (b.mu only to copy the session list). They are for operators, not
// the hot path: each walks what it lists.

// ClientSnapshot is one session as the admin API shows it.
type ClientSnapshot struct {
	ClientID   string
	Username   string
	Owner      string
	Connected  bool
	Remote     string // ip:port while connected
	Listener   string
	Version    byte // 3, 4 or 5
	Persistent bool
	Expiry     uint32    // Session Expiry Interval, seconds
	DiscAt     time.Time // zero while connected or never disconnected
	Subs       int
	Inflight   int
	Queued     int
	// Detail only (Client): the window and the queue's bytes and limits,
	// and the subscriptions.
	InflightMax   int
	QueuedBytes   int
	QueueMax      int
	QueueMaxBytes int
	Subscriptions []SubscriptionSnapshot
}

// SubscriptionSnapshot is one subscription of one session.
type SubscriptionSnapshot struct {
	ClientID string
	Filter   string // without $share/group/
	Group    string // the share group, or ""
	QoS      byte
	NoLocal  bool
	RAP      bool
	RH       byte
	ID       uint32
}

// RetainedSnapshot is one retained message.
type RetainedSnapshot struct {
	Topic   string
	Message *Message // shared: do not modify
}

// Started is when the broker was started.
func (b *Broker) Started() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

// sessionList copies the session registry, sorted by client id.
func (b *Broker) sessionList() []*session {
	b.mu.Lock()
	list := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		list = append(list, s)
	}
	b.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].id < list[j].id })
	return list
}

// Clients returns a snapshot of every session for which keep returns
// true, sorted by client id, without subscription lists. keep may be nil.
func (b *Broker) Clients(keep func(*ClientSnapshot) bool) []ClientSnapshot {
	var out []ClientSnapshot
	for _, s := range b.sessionList() {
		s.mu.Lock()
		c, ok := s.snapshotLocked(false)
		s.mu.Unlock()
		if ok && (keep == nil || keep(&c)) {
			out = append(out, c)
		}
	}
	return out
}

// Client returns the session of clientID with its subscriptions.
func (b *Broker) Client(clientID string) (ClientSnapshot, bool) {
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return ClientSnapshot{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked(true)
}

func (s *session) snapshotLocked(detail bool) (ClientSnapshot, bool) {
	if s.gone {
		return ClientSnapshot{}, false
	}
	c := ClientSnapshot{ClientID: s.id, Owner: s.owner, Connected: s.conn != nil, Version: byte(s.version),
		Persistent: s.persistent, Expiry: s.expiry, Subs: len(s.subs), Inflight: len(s.inflight), Queued: s.qlenLocked()}
	if s.info != nil {
		c.Username, c.Listener = s.info.Username, s.info.Listener
	}
	if s.conn != nil {
		if a := s.conn.info.Remote; a != nil {
			c.Remote = a.String()
		}
	} else if s.discAt > 0 {
		c.DiscAt = time.Unix(s.discAt, 0)
	}
	if !detail {
		return c, true
	}
	if s.conn != nil {
		c.InflightMax = s.window(s.conn)
	}
	c.QueuedBytes = s.qbytes
	c.QueueMax, c.QueueMaxBytes = s.queueLimitsLocked()
	c.Subscriptions = s.subscriptionsLocked()
	return c, true
}

func (s *session) subscriptionsLocked() []SubscriptionSnapshot {
	out := make([]SubscriptionSnapshot, 0, len(s.subs))
	for f, o := range s.subs {
		sub := SubscriptionSnapshot{ClientID: s.id, Filter: f, QoS: o.QoS, NoLocal: o.NoLocal, RAP: o.RAP, RH: o.RH, ID: o.ID}
		if g, inner, ok, _ := topic.ParseShared(f); ok {
			sub.Group, sub.Filter = g, inner
		}
		out = append(out, sub)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Filter != out[j].Filter {
			return out[i].Filter < out[j].Filter
		}
		return out[i].Group < out[j].Group
	})
	return out
}

// Subscriptions returns every session's subscriptions, by client id and
// filter, for which keep returns true (keep may be nil).
func (b *Broker) Subscriptions(keep func(*SubscriptionSnapshot) bool) []SubscriptionSnapshot {
	var out []SubscriptionSnapshot
	for _, s := range b.sessionList() {
		s.mu.Lock()
		if !s.gone {
			for _, x := range s.subscriptionsLocked() {
				if keep == nil || keep(&x) {
					out = append(out, x)
				}
			}
		}
		s.mu.Unlock()
	}
	return out
}

// Topics returns the subscribed filters ($share/group/filter for shared
// ones) with their subscriber counts, sorted.
func (b *Broker) Topics() (filters []string, subscribers []int) {
	n := map[string]int{}
	b.subs.Range(func(f string, _ *session, _ subOpts) bool { n[f]++; return true })
	b.shared.Range(func(g, f string, m []topic.Entry[*session, subOpts]) bool {
		n["$share/"+g+"/"+f] += len(m)
		return true
	})
	for f := range n {
		filters = append(filters, f)
	}
	sort.Strings(filters)
	for _, f := range filters {
		subscribers = append(subscribers, n[f])
	}
	return filters, subscribers
}

// RetainedMatching returns the retained messages whose topics match
// filter (the $SYS values included when the filter names them), sorted
// by topic.
func (b *Broker) RetainedMatching(filter string) []RetainedSnapshot {
	var out []RetainedSnapshot
	b.retained.Match(filter, func(t string, m *Message) { out = append(out, RetainedSnapshot{t, m}) })
	sort.Slice(out, func(i, j int) bool { return out[i].Topic < out[j].Topic })
	return out
}

// Retained returns the retained message of topic name t.
func (b *Broker) Retained(t string) (*Message, bool) { return b.retained.Get(t) }

// DeleteRetained clears the retained message of t, in the index and the
// store, without routing anything; it reports whether there was one.
func (b *Broker) DeleteRetained(t string) bool {
	if _, ok := b.retained.Get(t); !ok {
		return false
	}
	b.setRetained(&Message{Topic: t}, nil)
	return true
}

// RetainedCount is the number of retained messages that clients
// published: the $SYS values are left out (Stats.Retained counts them).
func (b *Broker) RetainedCount() int {
	b.retMu.Lock()
	defer b.retMu.Unlock()
	return b.retUse.n
}
