package psession

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/registry"
)

// leaderOf is the index of the node leading a stream.
func leaderOf(t testing.TB, nodes []*node, stream string) int {
	t.Helper()
	var leader string
	eventually(t, testWait, stream+"'s leader", func() bool {
		st, err := nodes[0].s.js.Stream(t.Context(), stream)
		if err != nil {
			return false
		}
		info, err := st.Info(t.Context())
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
			return false
		}
		leader = info.Cluster.Leader
		return true
	})
	for i, nd := range nodes {
		if nd.f.NodeName() == leader {
			return i
		}
	}
	t.Fatalf("leader %q is none of the nodes", leader)
	return -1
}

// TestCoreLossKeepsWorking: with one core of three gone (the log's
// leader), what was acknowledged before is all there, and Store, Save,
// Load and Deliver work on the two left once they elected a leader.
func TestCoreLossKeepsWorking(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	for _, nd := range nodes {
		nd.s.Deliver(func(uint64, string, *broker.Message) {})
	}
	var acked []uint64
	for i := range 20 {
		acked = append(acked, mustStore(t, nodes[i%3].s, msg("before", fmt.Sprint(i))))
	}
	mustSave(t, nodes[0].s, &broker.SessionRecord{ClientID: "c1", Filters: []string{"before"}, Expiry: neverExpires, Cursor: 3})
	dead := leaderOf(t, nodes, nodes[0].s.LogStream())
	nodes[dead].s.Close()
	nodes[dead].f.Close()
	var left []*node
	for i, nd := range nodes {
		if i != dead {
			left = append(left, nd)
		}
	}
	// The first writes may fail while the two elect a new leader; then
	// every one succeeds.
	var seq uint64
	eventually(t, testWait, "a Store after the election", func() bool {
		q, err := store(t, left[0].s, msg("after", "x"))
		seq = q
		return err == nil
	})
	for i := range 10 {
		mustStore(t, left[i%2].s, msg("after", fmt.Sprint(i)))
	}
	for _, nd := range left {
		got, dropped := backlog(t, nd.s, "c1", []string{"before"}, 0, seq)
		if len(got) != len(acked) || dropped != 0 {
			t.Fatalf("%s: backlog after the loss has %d of the %d acknowledged messages (dropped %d)", nd.f.NodeName(), len(got), len(acked), dropped)
		}
		for i, g := range got {
			if want := fmt.Sprintf("before=%d@%d", i, acked[i]); g != want {
				t.Errorf("%s: backlog[%d] = %s, want %s", nd.f.NodeName(), i, g, want)
			}
		}
	}
	var rec *broker.SessionRecord
	eventually(t, testWait, "a Load after the election", func() bool {
		r, err := left[1].s.Load(t.Context(), "c1")
		rec = r
		return err == nil
	})
	if rec == nil || rec.Cursor != 3 {
		t.Fatalf("record after the loss: %+v", rec)
	}
	mustSave(t, left[1].s, &broker.SessionRecord{ClientID: "c2", Expiry: 60})
	// Deliver goes on on the nodes left.
	last := mustStore(t, left[1].s, msg("after", "last"))
	for _, nd := range left {
		eventually(t, testWait, nd.f.NodeName()+"'s reader", func() bool { return nd.s.Head() >= last })
	}
}

// TestNoQuorumRefuses: a core whose two peers are gone has no majority:
// Store, StoreFor, Save, Delete and Load fail within Timeout (with some
// slack for the test's machine), and nothing is acknowledged. (Get and
// Backlog read messages that never change; a leader not yet stepped down
// may answer them.)
func TestNoQuorumRefuses(t *testing.T) {
	const timeout = 2 * time.Second
	nodes := startCluster(t, 3, func(c *Config) { c.Timeout = timeout })
	// The lone core is the bucket's leader: it answers reads until it
	// steps down, seconds after it lost its peers.
	i := leaderOf(t, nodes, "KV_"+nodes[0].s.Bucket())
	lone := nodes[i].s
	mustStore(t, lone, msg("t", "before"))
	mustSave(t, lone, &broker.SessionRecord{ClientID: "c", Expiry: 60})
	for j, nd := range nodes {
		if j != i {
			nd.s.Close()
			nd.f.Close()
		}
	}
	bound := timeout + 2*time.Second
	within := func(what string, fn func() error) {
		t.Helper()
		start := time.Now()
		err := fn()
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s succeeded without a majority", what)
		} else if took > bound {
			t.Errorf("%s failed after %v, more than %v (%v)", what, took, bound, err)
		}
	}
	// First, while the lone core may still lead the bucket and answer
	// the read: Load confirms it at a majority before returning it.
	within("Load", func() error { _, err := lone.Load(context.Background(), "c"); return err })
	within("Load of an unknown id", func() error { _, err := lone.Load(context.Background(), "unknown"); return err })
	within("Store", func() error { _, err := store(t, lone, msg("t", "x")); return err })
	within("StoreFor", func() error { _, err := storeFor(t, lone, "c", msg("t", "x")); return err })
	within("Save", func() error { return save(t, lone, &broker.SessionRecord{ClientID: "c", Expiry: 61}) })
	within("Delete", func() error {
		ch := make(chan result, 1)
		lone.Delete("c", 0, func(err error) { ch <- result{0, err} })
		_, err := waitResult(t, ch)
		return err
	})
	// Many at once: every one fails, none waits past the bound.
	start := time.Now()
	ch := make(chan result, 500)
	for range 500 {
		lone.Store(msg("t", "burst"), func(seq uint64, err error) { ch <- result{seq, err} })
	}
	for range 500 {
		if r := <-ch; r.err == nil {
			t.Fatal("a Store succeeded without a majority")
		}
	}
	if took := time.Since(start); took > bound {
		t.Errorf("500 Stores failed after %v, more than %v", took, bound)
	}
}

// TestLimitsDropped: past max_log_bytes the oldest messages go; Backlog
// counts those of its range as dropped and returns the rest, Get fails
// for a removed one.
func TestLimitsDropped(t *testing.T) {
	s := startCluster(t, 1, func(c *Config) { c.MaxLogBytes = 64 << 10 })[0].s
	payload := strings.Repeat("x", 1024)
	var seqs []uint64
	for range 200 {
		seqs = append(seqs, mustStore(t, s, msg("lim", payload)))
	}
	info, err := s.plog.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first := info.State.FirstSeq
	if first <= seqs[0] || first > seqs[len(seqs)-1] {
		t.Fatalf("first sequence %d: the limit removed nothing (or everything) of %d..%d", first, seqs[0], seqs[len(seqs)-1])
	}
	from, to := seqs[0]-1, seqs[len(seqs)-1]
	got, dropped := backlog(t, s, "c", []string{"lim"}, from, to)
	if dropped != first-seqs[0] || uint64(len(got)) != to-first+1 {
		t.Errorf("Backlog (%d, %d] with the log from %d: read %d, dropped %d; want %d and %d",
			from, to, first, len(got), dropped, to-first+1, first-seqs[0])
	}
	// A range entirely kept drops nothing.
	if _, dropped := backlog(t, s, "c", []string{"lim"}, first, to); dropped != 0 {
		t.Errorf("Backlog of a kept range dropped %d", dropped)
	}
	if _, err := s.Get(t.Context(), seqs[0]); err == nil {
		t.Error("Get of a removed message succeeded")
	}
	if m, err := s.Get(t.Context(), to); err != nil || string(m.Payload) != payload {
		t.Errorf("Get of a kept message: %v", err)
	}
}

// TestExpiredRecords: an expired record is not loaded and not in the
// index; the sweeper deletes it with a compare-and-set, so a record saved
// again after it was seen expired stays, and two nodes sweeping the same
// record delete it once.
func TestExpiredRecords(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b := nodes[0].s, nodes[1].s
	now := time.Now().Unix()
	old := &broker.SessionRecord{ClientID: "old", Filters: []string{"old/t"}, Expiry: 10, DiscAt: now - 100}
	live := &broker.SessionRecord{ClientID: "live", Filters: []string{"live/t"}, Expiry: 3600, DiscAt: now - 100}
	never := &broker.SessionRecord{ClientID: "never", Filters: []string{"never/t"}, Expiry: neverExpires, DiscAt: 1}
	for _, r := range []*broker.SessionRecord{old, live, never} {
		mustSave(t, a, r)
	}
	for _, nd := range nodes {
		eventually(t, testWait, "the index", func() bool { return nd.s.Persistent("live/t") && nd.s.Persistent("never/t") })
		if nd.s.Persistent("old/t") {
			t.Error("the index matches an expired record")
		}
	}
	if r, err := b.Load(t.Context(), "old"); err != nil || r != nil {
		t.Errorf("Load of an expired record: %+v, %v", r, err)
	}
	// Two nodes sweep at once: one deletes.
	oldRev := revOf(t, a, "old")
	counts := make(chan int, 2)
	for _, s := range []*Store{a, b} {
		go func() { counts <- s.deleteExpired([]victim{{registry.Key("old"), oldRev}}) }()
	}
	if n := <-counts + <-counts; n != 1 {
		t.Errorf("two sweeps deleted %d times, want 1", n)
	}
	if rev, val, _ := a.readKey(t.Context(), registry.Key("old")); val != nil || rev == oldRev {
		t.Errorf("the expired record is still there (rev %d)", rev)
	}
	// Seen expired, then saved again (its client came back): it stays.
	back := &broker.SessionRecord{ClientID: "back", Filters: []string{"back/t"}, Expiry: 10, DiscAt: now - 100}
	mustSave(t, a, back)
	seen := revOf(t, a, "back")
	back.DiscAt = 0
	mustSave(t, b, back)
	if n := a.deleteExpired([]victim{{registry.Key("back"), seen}}); n != 0 {
		t.Errorf("a record saved again after it was seen expired was deleted")
	}
	if r, err := b.Load(t.Context(), "back"); err != nil || r == nil {
		t.Errorf("Load after the sweep: %+v, %v", r, err)
	}
	// The sweeper of a node finds what expired by itself.
	mustSave(t, a, &broker.SessionRecord{ClientID: "soon", Filters: []string{"soon/t"}, Expiry: 1, DiscAt: now})
	eventually(t, testWait, "the record to expire and be swept", func() bool { return b.sweepOnce() > 0 })
	for _, nd := range nodes {
		eventually(t, testWait, "the index to drop the swept record", func() bool { return !nd.s.Persistent("soon/t") })
		if !nd.s.Persistent("live/t") || !nd.s.Persistent("never/t") || !nd.s.Persistent("back/t") {
			t.Error("the sweep removed a record not expired")
		}
	}
}

// revOf is the revision of id's record, read at the leader.
func revOf(t testing.TB, s *Store, id string) uint64 {
	t.Helper()
	rev, val, err := s.readKey(t.Context(), registry.Key(id))
	if err != nil || val == nil {
		t.Fatalf("record %s: %v", id, err)
	}
	return rev
}

// TestMaxLogAge: past max_log_age a message leaves the log; Backlog counts
// it as dropped.
func TestMaxLogAge(t *testing.T) {
	s := startCluster(t, 1, func(c *Config) { c.MaxLogAge = time.Second })[0].s
	var last uint64
	for i := range 5 {
		last = mustStore(t, s, msg("age", fmt.Sprint(i)))
	}
	eventually(t, testWait, "the messages to age out", func() bool {
		info, err := s.plog.Info(t.Context())
		return err == nil && info.State.FirstSeq > last
	})
	got, dropped := backlog(t, s, "c", []string{"age"}, 0, last)
	if len(got) != 0 || dropped != last {
		t.Errorf("Backlog after max_log_age: read %q, dropped %d; want none and %d", got, dropped, last)
	}
}

// startMortal starts three cores n0, n1, n2 (run "run1") whose Alive says
// a node is dead once the test stores its name in dead.
func startMortal(t *testing.T, mod func(*Config)) ([]*node, *sync.Map) {
	dead := new(sync.Map)
	n := 0
	return startCluster(t, 3, func(c *Config) {
		c.Node, c.Incarnation = "n"+strconv.Itoa(n), "run1"
		n++
		c.Alive = func(node, inc string) bool { _, d := dead.Load(node); return !d && inc == "run1" }
		if mod != nil {
			mod(c)
		}
	}), dead
}

// TestDeadHolderExpires: a record saved while its client was connected
// (DiscAt 0) expires its Session Expiry Interval after its holder (the
// node and run that saved it) is seen dead: every node's index drops it
// and a core's sweeper deletes it; a live holder's record stays (fails
// with records of connected clients that never expire).
func TestDeadHolderExpires(t *testing.T) {
	nodes, dead := startMortal(t, func(c *Config) { c.LiveEvery, c.SweepEvery = 100*time.Millisecond, 200*time.Millisecond })
	a, b := nodes[0].s, nodes[1].s
	mustSave(t, a, &broker.SessionRecord{ClientID: "gone", Filters: []string{"dh/gone"}, Expiry: 2})
	mustSave(t, a, &broker.SessionRecord{ClientID: "forever", Filters: []string{"dh/forever"}, Expiry: neverExpires})
	mustSave(t, b, &broker.SessionRecord{ClientID: "kept", Filters: []string{"dh/kept"}, Expiry: 1})
	for _, nd := range nodes {
		eventually(t, testWait, "the index", func() bool {
			return nd.s.Persistent("dh/gone") && nd.s.Persistent("dh/kept") && nd.s.Persistent("dh/forever")
		})
	}
	a.Close()
	dead.Store("n0", true)
	killed := time.Now()
	for _, nd := range nodes[1:] {
		eventually(t, testWait, "the dead holder's record to expire", func() bool { return !nd.s.Persistent("dh/gone") })
	}
	if el := time.Since(killed); el < 2*time.Second {
		t.Errorf("expired %v after its holder died, before its expiry (2 s)", el)
	}
	eventually(t, testWait, "the sweep", func() bool {
		_, val, err := b.readKey(t.Context(), registry.Key("gone"))
		return err == nil && val == nil
	})
	if r, err := b.Load(t.Context(), "gone"); err != nil || r != nil {
		t.Errorf("Load of the expired record: %+v, %v", r, err)
	}
	for _, nd := range nodes[1:] {
		if !nd.s.Persistent("dh/kept") || !nd.s.Persistent("dh/forever") {
			t.Error("a record of a live holder, or one that never expires, was dropped")
		}
	}
	if r, err := b.Load(t.Context(), "kept"); err != nil || r == nil {
		t.Errorf("Load of a live holder's record: %+v, %v", r, err)
	}
}

// TestSaveFenced: Save is a compare-and-set on the record's revision:
// once another node loaded the record (its confirming write), a Save at
// the revision the first node had fails with broker.ErrSessionMoved and
// the record keeps what the loader saved (fails with unconditional puts).
func TestSaveFenced(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b := nodes[0].s, nodes[1].s
	r := &broker.SessionRecord{ClientID: "f", Filters: []string{"f/a"}, Expiry: 60}
	mustSave(t, a, r)
	ra, err := a.Load(t.Context(), "f")
	if err != nil || ra == nil || ra.Rev == 0 {
		t.Fatalf("Load on a: %+v, %v", ra, err)
	}
	ch := make(chan result, 1)
	a.Save(ra, func(rev uint64, err error) { ch <- result{rev, err} })
	res, err := waitResult(t, ch)
	if err != nil || res <= ra.Rev {
		t.Fatalf("Save at Load's revision: rev %d (Load's %d), %v", res, ra.Rev, err)
	}
	ra.Rev = res
	rb, err := b.Load(t.Context(), "f") // the session moves to b
	if err != nil || rb == nil || rb.Rev <= ra.Rev {
		t.Fatalf("Load on b: %+v, %v", rb, err)
	}
	rb.Filters = []string{"f/b"}
	mustSave(t, b, rb)
	ra.Filters = []string{"f/late"}
	if err := save(t, a, ra); !errors.Is(err, broker.ErrSessionMoved) {
		t.Fatalf("a late Save of the node the session left: %v, want ErrSessionMoved", err)
	}
	if got, err := b.Load(t.Context(), "f"); err != nil || got == nil || !slices.Equal(got.Filters, []string{"f/b"}) {
		t.Fatalf("the record after the late Save: %+v, %v", got, err)
	}
}

// del deletes id's record at rev and returns the result.
func del(t testing.TB, s *Store, id string, rev uint64) error {
	t.Helper()
	ch := make(chan result, 1)
	s.Delete(id, rev, func(err error) { ch <- result{0, err} })
	_, err := waitResult(t, ch)
	return err
}

// TestDeleteFenced: node a held a session and missed its move to b (b
// loaded the record); when a's copy expires, a's Delete at the revision
// it last saw is refused with ErrSessionMoved and b's record stays (fails
// with an unconditional delete). b, the holder, deletes at its revision.
func TestDeleteFenced(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b := nodes[0].s, nodes[1].s
	r := &broker.SessionRecord{ClientID: "d", Filters: []string{"d/a"}, Expiry: 60}
	ch := make(chan result, 1)
	a.Save(r, func(rev uint64, err error) { ch <- result{rev, err} })
	revA, err := waitResult(t, ch)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Load(t.Context(), "d") // the session moves to b; a is not told
	if err != nil || rb == nil {
		t.Fatalf("Load on b: %+v, %v", rb, err)
	}
	// Every node's index learns the record from its watch, each in its
	// own time: it must have it before a refused Delete can be shown not
	// to remove it.
	for _, nd := range nodes {
		eventually(t, 10*time.Second, "every index to have the record", func() bool { return nd.s.Persistent("d/a") })
	}
	if err := del(t, a, "d", revA); !errors.Is(err, broker.ErrSessionMoved) {
		t.Fatalf("the Delete of the node the session left: %v, want ErrSessionMoved", err)
	}
	if got, err := b.Load(t.Context(), "d"); err != nil || got == nil || !slices.Equal(got.Filters, []string{"d/a"}) {
		t.Fatalf("b's record after a's Delete: %+v, %v", got, err)
	}
	for _, nd := range nodes {
		if !nd.s.Persistent("d/a") {
			t.Error("a refused Delete removed the record from an index")
		}
	}
	if err := del(t, b, "d", revOf(t, b, "d")); err != nil {
		t.Fatalf("the holder's Delete: %v", err)
	}
	if got, err := a.Load(t.Context(), "d"); err != nil || got != nil {
		t.Fatalf("Load after the holder's Delete: %+v, %v", got, err)
	}
}
