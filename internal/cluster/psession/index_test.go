package psession

import (
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
)

// TestPersistentCount: the count of indexed filters that lets Persistent
// answer a cluster without persistent subscribers with one load follows
// records replaced, expired and deleted, so that a message for a live
// record is never taken as unwanted.
func TestPersistentCount(t *testing.T) {
	s := &Store{}
	s.idx.init()
	rev := uint64(0)
	save := func(key string, r *broker.SessionRecord) {
		rev++
		e := entryOf(r, holder{})
		e.rev = rev
		s.idx.apply(key, e)
	}
	if s.Persistent("a/b") || s.idx.nSubs.Load() != 0 {
		t.Fatalf("empty index: Persistent true or count %d", s.idx.nSubs.Load())
	}
	save("k1", &broker.SessionRecord{ClientID: "c1", Filters: []string{"a/+", "a/b", "$share/g/a/b"}, Expiry: 60})
	save("k2", &broker.SessionRecord{ClientID: "c2", Filters: []string{"a/b"}, Expiry: 60, DiscAt: time.Now().Unix() - 120})
	if n := s.idx.nSubs.Load(); n != 2 || !s.Persistent("a/b") || s.Persistent("b") {
		t.Fatalf("two filters of a live record (and an expired one): count %d, Persistent(a/b) %v, Persistent(b) %v",
			n, s.Persistent("a/b"), s.Persistent("b"))
	}
	save("k1", &broker.SessionRecord{ClientID: "c1", Filters: []string{"b"}, Expiry: 60})
	if n := s.idx.nSubs.Load(); n != 1 || s.Persistent("a/b") || !s.Persistent("b") {
		t.Fatalf("replaced record: count %d, want 1", n)
	}
	rev++
	s.idx.apply("k1", &entry{rev: rev}) // deleted (a tombstone: no filters)
	if n := s.idx.nSubs.Load(); n != 0 || s.Persistent("b") {
		t.Fatalf("deleted record: count %d, Persistent(b) %v", n, s.Persistent("b"))
	}
}
