package psession

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/culexmq/culex/internal/broker"
)

// entry is what the index keeps of one session record. It is not changed
// once applied (Persistent reads it under the topic index's read lock
// only): a change of the record is a new entry.
type entry struct {
	rev      uint64   // the record's revision (its sequence in the bucket's stream)
	filters  []string // plain filters (not shared), indexed; nil for a deleted record
	deadline int64    // when it expires, Unix seconds (0: not now)
	gone     int64    // a deleted record (tombstone): when it was applied
	// holder and expiry of a record saved while its client was connected
	// (and that may expire): it expires expiry seconds after its holder
	// is seen dead.
	holder string
	expiry uint32
	// shared are the record's shared subscriptions (sharedSubs), indexed
	// apart; saver names the node and run that saved it (connected or
	// not), for sharedOrphans.
	shared []sharedSub
	saver  string
}

func entryOf(r *broker.SessionRecord, h holder) *entry {
	e := &entry{filters: plainFilters(r.Filters), deadline: deadline(r, 0), shared: sharedSubs(r.Filters)}
	if h != (holder{}) {
		e.saver = h.String()
	}
	if r.DiscAt == 0 && r.Expiry != neverExpires && h != (holder{}) {
		e.holder, e.expiry = h.String(), r.Expiry
	}
	return e
}

// index is this node's copy of every record's filters, for Persistent: the
// bucket's watch applies every change; a Save or Delete of this node
// applies its own as soon as a majority confirmed it. The revisions keep
// the later of the two.
type index struct {
	subs *topic.Index[string, *entry] // plain filter -> record key
	// nSubs is the number of subs' (filter, key) pairs, read without the
	// lock: with none, Persistent is a load.
	nSubs atomic.Int64
	// shared: a shared subscription's filter -> record key and group
	// (sharedKey); nShared its size, read without the lock.
	shared  *topic.Index[string, *entry]
	nShared atomic.Int64

	mu   sync.Mutex
	keys map[string]*entry // record key -> its entry; deleted ones for a minute
	// dead: holders of connected records seen dead (Config.Alive), and
	// when (Unix seconds).
	dead map[string]int64
}

func (x *index) init() {
	x.subs = topic.NewIndex[string, *entry]()
	x.shared = topic.NewIndex[string, *entry]()
	x.keys = make(map[string]*entry)
	x.dead = make(map[string]int64)
}

// deadAt is when h was seen dead (0: not).
func (x *index) deadAt(h holder) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.dead[h.String()]
}

// apply makes e the entry of key unless the index has a later one.
func (x *index) apply(key string, e *entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.keys[key]
	if old != nil && old.rev >= e.rev {
		return
	}
	if old != nil {
		x.unindexLocked(key, old)
	}
	if e.filters == nil {
		e.gone = time.Now().Unix()
	}
	if d := x.dead[e.holder]; d != 0 && e.holder != "" {
		e.deadline = d + int64(e.expiry)
	}
	x.keys[key] = e
	x.indexLocked(key, e)
}

// indexLocked makes key's filters and shared subscriptions match e
// unless it expired (kept in keys for the sweeper, not indexed).
func (x *index) indexLocked(key string, e *entry) {
	if expired(e.deadline, time.Now()) {
		return
	}
	for _, f := range e.filters {
		if !x.subs.Subscribe(f, key, e) {
			x.nSubs.Add(1)
		}
	}
	for _, sh := range e.shared {
		if !x.shared.Subscribe(sh.filter, sharedKey(key, sh.group), e) {
			x.nShared.Add(1)
		}
	}
}

// unindexLocked removes what indexLocked made of key's entry e.
func (x *index) unindexLocked(key string, e *entry) {
	for _, f := range e.filters {
		if x.subs.Unsubscribe(f, key) {
			x.nSubs.Add(-1)
		}
	}
	for _, sh := range e.shared {
		if x.shared.Unsubscribe(sh.filter, sharedKey(key, sh.group)) {
			x.nShared.Add(-1)
		}
	}
}

// live is the number of records indexed: not deleted, not expired.
func (x *index) live() int {
	now := time.Now()
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, e := range x.keys {
		if e.filters != nil && !expired(e.deadline, now) {
			n++
		}
	}
	return n
}

// Persistent implements broker.SessionStore from the index: a record not
// expired has a filter matching t (shared filters are not indexed).
//
// It is asked once per QoS 1/2 message published on this node (the
// broker's storeInLog), which is where sharedOrphans counts the messages
// of groups no live node holds a member of.
func (s *Store) Persistent(t string) bool {
	if s.idx.nShared.Load() > 0 {
		s.sharedOrphans(t)
	}
	if s.idx.nSubs.Load() == 0 {
		return false // no persistent session subscribes: most clusters' most messages
	}
	var now time.Time // read once, at the first match with a deadline
	found := false
	s.idx.subs.Match(t, func(_ string, _ string, e *entry) {
		if found {
			return
		}
		if e.deadline != 0 && now.IsZero() {
			now = time.Now()
		}
		found = !expired(e.deadline, now)
	})
	return found
}

// watch applies the bucket's records to the index until the Store closes
// (registry.Follow); it closes loaded once the records present at the
// start are applied. The watch is an ordered consumer: after a
// reconnection it resumes where it stopped.
func (s *Store) watch(w jetstream.KeyWatcher, loaded chan<- struct{}) {
	registry.Follow(s.ctx, w, func(e jetstream.KeyValueEntry) {
		if e == nil {
			if loaded != nil {
				close(loaded)
				loaded = nil
			}
			return
		}
		s.onRecord(e)
	})
}

func (s *Store) onRecord(e jetstream.KeyValueEntry) {
	s.stats.WatchUpdates.Add(1)
	if e.Operation() != jetstream.KeyValuePut {
		s.idx.apply(e.Key(), &entry{rev: e.Revision()})
		return
	}
	r, h, err := decodeRecord(e.Value())
	if err != nil {
		s.log.Warn("cluster: persistent sessions: unreadable session record", "key", e.Key(), "err", err)
		s.idx.apply(e.Key(), &entry{rev: e.Revision()})
		return
	}
	en := entryOf(r, h)
	en.rev = e.Revision()
	if s.idx.same(e.Key(), en) {
		s.stats.WatchUnchanged.Add(1)
	}
	s.idx.apply(e.Key(), en)
}

// same says whether key's entry indexes what e would (its filters,
// holder and expiry): the update that brought e changed only what the
// index does not keep (the cursor, the broker's data).
func (x *index) same(key string, e *entry) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	old := x.keys[key]
	return old != nil && old.filters != nil && slices.Equal(old.filters, e.filters) && slices.Equal(old.shared, e.shared) &&
		old.holder == e.holder && old.expiry == e.expiry && (old.deadline == e.deadline || e.holder != "")
}

// sweep deletes the expired records every SweepEvery, each with a
// compare-and-set on the revision the index saw expired: a record saved
// again meanwhile (its client came back) stays, and two nodes sweeping
// the same record delete it once. Without SweepEvery (a replicant) it
// only forgets deleted records, every minute.
func (s *Store) sweep() {
	every := s.cfg.SweepEvery
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	live := time.NewTicker(s.cfg.LiveEvery)
	defer live.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-live.C:
			s.checkHolders()
			continue
		case <-t.C:
		}
		s.checkHolders()
		vs := s.expiredRecords()
		if s.cfg.SweepEvery > 0 {
			if n := s.deleteExpired(vs); n > 0 {
				s.log.Info("cluster: persistent sessions: expired session records deleted", "count", n)
			}
		}
	}
}

// checkHolders asks Config.Alive about the holders of the records saved
// while their clients were connected: a record whose holder is dead
// expires its Session Expiry Interval after this node first saw it dead
// (every node counts from its own sighting: the earliest sweeper deletes
// it); a holder alive again (a partition healed) stops the count.
func (s *Store) checkHolders() {
	alive := s.cfg.Alive
	if alive == nil {
		return
	}
	hs := map[string]holder{}
	s.idx.mu.Lock()
	for _, e := range s.idx.keys {
		if e.holder != "" && e.filters != nil {
			node, inc, _ := strings.Cut(e.holder, "\x00")
			hs[e.holder] = holder{node, inc}
		}
	}
	s.idx.mu.Unlock()
	dead := map[string]bool{}
	for k, h := range hs {
		dead[k] = h != s.me && !alive(h.node, h.inc)
	}
	now := time.Now().Unix() + 1 // rounded up: never early
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	for k := range x.dead {
		if !dead[k] {
			delete(x.dead, k) // alive again, or no record of it left
		}
	}
	for k, d := range dead {
		if d && x.dead[k] == 0 {
			x.dead[k] = now
			s.log.Warn("cluster: persistent sessions: the node that held connected sessions is gone: they expire from now",
				"node", hs[k].node)
		}
	}
	for key, e := range x.keys {
		if e.holder == "" || e.filters == nil {
			continue
		}
		want := int64(0)
		if d := x.dead[e.holder]; d != 0 {
			want = d + int64(e.expiry)
		}
		if want == e.deadline {
			continue
		}
		ne := *e
		ne.deadline = want
		x.unindexLocked(key, e)
		x.keys[key] = &ne
		x.indexLocked(key, &ne)
	}
}

// victim is a record the index saw expired at revision rev.
type victim struct {
	key string
	rev uint64
}

// sweepOnce deletes the records expired now; it returns how many.
func (s *Store) sweepOnce() int { return s.deleteExpired(s.expiredRecords()) }

// expiredRecords lists the records expired now, and forgets the records
// deleted more than a minute ago (kept so that a late apply of an older
// revision is recognised).
func (s *Store) expiredRecords() []victim {
	var vs []victim
	now := time.Now()
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	for k, e := range s.idx.keys {
		switch {
		case e.gone != 0 && now.Unix()-e.gone > 60:
			delete(s.idx.keys, k)
		case e.filters != nil && expired(e.deadline, now):
			vs = append(vs, victim{k, e.rev})
		}
	}
	return vs
}

// forgetIfGone drops v from the index when its key has no message left: a
// delete whose marker JetStream removed (MarkerTTL) while this node's
// watch was cut off, which the watch, resuming after it, never brings.
// Any later change of the key the watch brings; the tombstone's revision,
// above v's and below any later write's, lets those in.
func (s *Store) forgetIfGone(v victim) {
	ctx, cancel := s.opCtx(s.ctx)
	defer cancel()
	if rev, val, err := s.readKey(ctx, v.key); err == nil && rev == 0 && val == nil {
		s.idx.apply(v.key, &entry{rev: v.rev + 1})
	}
}

// deleteExpired deletes each victim's record if it is still at the
// revision seen expired; it returns how many it deleted.
func (s *Store) deleteExpired(vs []victim) int {
	n := 0
	for _, v := range vs {
		ctx, cancel := s.opCtx(s.ctx)
		err := s.kv.Purge(ctx, v.key, jetstream.LastRevision(v.rev), jetstream.PurgeTTL(s.cfg.MarkerTTL))
		cancel()
		var api *jetstream.APIError
		switch {
		case err == nil:
			n++
			s.stats.Swept.Add(1)
		case errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
			// saved again, or swept by another node
			s.forgetIfGone(v)
		case errors.Is(err, context.Canceled):
			return n
		default:
			s.log.Warn("cluster: persistent sessions: expired session record not deleted", "key", v.key, "err", err)
		}
	}
	return n
}

// HasSession implements broker.SessionIndex: whether clientID may have a
// record. A record in this node's index (not deleted; expired ones are
// still in the bucket) says yes at once; otherwise the key is read at the
// bucket's leader, since the index follows the bucket's watch and may
// lag behind a record another node saved a moment before it died. A
// failed read says yes: the caller then deletes, which costs a marker,
// never a session that should have been discarded.
func (s *Store) HasSession(clientID string) bool {
	if !s.ready.Load() {
		return true
	}
	key := registry.Key(clientID)
	s.idx.mu.Lock()
	e := s.idx.keys[key]
	s.idx.mu.Unlock()
	if e != nil && e.gone == 0 {
		return true
	}
	ctx, cancel := s.opCtx(context.Background())
	defer cancel()
	_, val, err := s.readKey(ctx, key)
	return err != nil || val != nil
}
