package psession

import (
	"fmt"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDeleteMarkersExpire: 100 sessions made and deleted, and 20 Loads of
// ids without a record (Load confirms their absence with a marker): the
// bucket holds their markers for MarkerTTL (1 s here), then nothing
// (fails when deletes leave plain delete markers: the bucket keeps one of
// every session ever deleted). A stale holder's Save at the revision it
// had is refused after the marker went too.
func TestDeleteMarkersExpire(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.MarkerTTL = time.Second })
	a, b := nodes[0].s, nodes[1].s
	const n = 100
	var stale *broker.SessionRecord
	for i := range n {
		id := fmt.Sprint("m-", i)
		r := &broker.SessionRecord{ClientID: id, Filters: []string{"m/" + id}, Expiry: 60}
		ch := make(chan result, 1)
		a.Save(r, func(rev uint64, err error) { ch <- result{rev, err} })
		rev, err := waitResult(t, ch)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			cp := *r
			cp.Rev, stale = rev, &cp
		}
		if err := del(t, b, id, rev); err != nil {
			t.Fatalf("Delete %s: %v", id, err)
		}
	}
	for i := range 20 {
		if r, err := b.Load(t.Context(), fmt.Sprint("none-", i)); err != nil || r != nil {
			t.Fatalf("Load of an unknown id: %+v, %v", r, err)
		}
	}
	values := func() uint64 {
		st, err := a.kv.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return st.Values()
	}
	t.Logf("after %d Save+Delete and 20 Loads of unknown ids: %d messages in the bucket", n, values())
	start := time.Now()
	eventually(t, testWait, "the markers to expire", func() bool { return values() == 0 })
	t.Logf("empty %v later", time.Since(start).Round(10*time.Millisecond))
	if err := save(t, a, stale); err == nil {
		t.Error("a Save at a revision deleted (its marker gone) was accepted")
	}
	if r, err := b.Load(t.Context(), stale.ClientID); err != nil || r != nil {
		t.Errorf("Load after the markers went: %+v, %v", r, err)
	}
}

// TestSweepForgetsRemovedRecord: the index has an expired record whose
// key has no message left (its delete marker expired while the node's
// watch was cut off, so the watch never brought it): the sweep's
// compare-and-set fails, and the record leaves the index instead of being
// tried again at every sweep (fails without the read after the failure).
func TestSweepForgetsRemovedRecord(t *testing.T) {
	s := startCluster(t, 1, nil)[0].s
	for range 4 { // the bucket's revisions past the entry's below
		mustSave(t, s, &broker.SessionRecord{ClientID: "other", Expiry: 60})
	}
	r := &broker.SessionRecord{ClientID: "gone", Filters: []string{"gone/t"}, Expiry: 1, DiscAt: time.Now().Unix() - 10}
	e := entryOf(r, holder{})
	e.rev = 2
	s.idx.apply(registry.Key("gone"), e)
	if vs := s.expiredRecords(); len(vs) != 1 {
		t.Fatalf("victims before the sweep: %v", vs)
	}
	if n := s.sweepOnce(); n != 0 {
		t.Fatalf("the sweep deleted %d records of a key without messages", n)
	}
	if vs := s.expiredRecords(); len(vs) != 0 {
		t.Fatalf("victims after the sweep: %v", vs)
	}
	mustSave(t, s, &broker.SessionRecord{ClientID: "gone", Filters: []string{"gone/t"}, Expiry: 60})
	if !s.Persistent("gone/t") {
		t.Error("a record saved after the tombstone is not in the index")
	}
}

// TestWatchFanOut measures what the records' watch costs: every Save
// reaches the watch of every node (the index of Persistent needs every
// record's filters on every node), and the Saves of a session in steady
// QoS 1 traffic (cursor and broker data only) leave every index as it
// was: the counters say how much of the watch's traffic a record split
// (the index's fields apart from the cursor and data) would save.
func TestWatchFanOut(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a := nodes[0].s
	watched := func() (updates, unchanged uint64) {
		for _, nd := range nodes {
			c := nd.s.Counters()
			updates += c.WatchUpdates
			unchanged += c.WatchUnchanged
		}
		return
	}
	u0, n0 := watched()
	r := &broker.SessionRecord{ClientID: "fan", Filters: []string{"fan/a"}, Expiry: 600}
	var rev uint64
	saveAt := func() {
		ch := make(chan result, 1)
		r.Rev = rev
		a.Save(r, func(rv uint64, err error) { ch <- result{rv, err} })
		var err error
		if rev, err = waitResult(t, ch); err != nil {
			t.Fatal(err)
		}
	}
	saveAt() // a new session
	const steady = 100
	for i := range steady { // QoS 1 progress: the cursor and in-flight data
		r.Cursor, r.Data = uint64(i+1), []byte{byte(i)}
		saveAt()
	}
	r.Filters = append(r.Filters, "fan/b") // a SUBSCRIBE
	saveAt()
	r.DiscAt = time.Now().Unix() // the client leaves
	saveAt()
	const saves = steady + 3
	key := registry.Key("fan")
	for _, nd := range nodes {
		eventually(t, testWait, "every node's watch to have the last Save", func() bool {
			x := &nd.s.idx
			x.mu.Lock()
			defer x.mu.Unlock()
			return x.keys[key] != nil && x.keys[key].rev == rev
		})
	}
	u, n := watched()
	t.Logf("%d Saves on one of %d nodes: %d records delivered to the watches (%.2f per Save), %d of them left the index unchanged",
		saves, len(nodes), u-u0, float64(u-u0)/saves, n-n0)
	// A watch may skip a Save that the next replaced before it was sent
	// (the bucket keeps one revision), never the last one.
	if u-u0 > saves*uint64(len(nodes)) || u-u0 < saves {
		t.Errorf("%d deliveries for %d Saves on %d nodes", u-u0, saves, len(nodes))
	}
}

// TestSharedOrphansCounted: a QoS 1/2 message matching a shared
// subscription group whose members are all persistent sessions of dead
// nodes is counted (once per group); a group with a member on a live
// node, or whose dead node's members expired, is not.
func TestSharedOrphansCounted(t *testing.T) {
	nodes, dead := startMortal(t, nil)
	a, b, c := nodes[0].s, nodes[1].s, nodes[2].s
	now := time.Now().Unix()
	mustSave(t, a, &broker.SessionRecord{ClientID: "g1", Filters: []string{"$share/g/o/#"}, Expiry: 3600})
	mustSave(t, a, &broker.SessionRecord{ClientID: "g2", Filters: []string{"$share/g/o/+", "plain/t"}, Expiry: 3600, DiscAt: now})
	mustSave(t, b, &broker.SessionRecord{ClientID: "h1", Filters: []string{"$share/h/o/#"}, Expiry: 3600})
	mustSave(t, a, &broker.SessionRecord{ClientID: "k1", Filters: []string{"$share/k/o/#"}, Expiry: 1, DiscAt: now - 10})
	eventually(t, testWait, "c's index", func() bool { return c.Persistent("plain/t") && c.idx.nShared.Load() == 3 })
	orphaned := func() uint64 { return c.Counters().SharedOrphaned }
	c.Persistent("o/x")
	if got := orphaned(); got != 0 {
		t.Fatalf("%d orphaned groups with every holder alive", got)
	}
	dead.Store("n0", true) // a's members: g's only ones; k's expired
	c.Persistent("o/x")
	if got := orphaned(); got != 1 {
		t.Fatalf("%d orphaned groups with a dead, want 1 (g)", got)
	}
	c.Persistent("other")
	dead.Store("n1", true)
	c.Persistent("o/x/y") // g1 (o/#) and h1 match, g2 (o/+) does not
	if got := orphaned(); got != 3 {
		t.Fatalf("%d orphaned groups in all with b dead too, want 3", got)
	}
}

// TestBucketOfEarlierVersion: a records bucket made without marker TTLs
// (by an earlier version) is updated at Start: a record made before is
// loaded, and a Delete's marker with its TTL is accepted (fails when the
// bucket is only opened: JetStream refuses a TTL on a stream without
// them).
func TestBucketOfEarlierVersion(t *testing.T) {
	nc := startAlone(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "culex_sessions", History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	old := &broker.SessionRecord{ClientID: "old", Filters: []string{"o"}, Expiry: 60}
	if _, err := kv.Put(t.Context(), registry.Key("old"), encodeRecord(old, holder{"n0", "run0"})); err != nil {
		t.Fatal(err)
	}
	s := startStores(t, []*node{{nc: nc}}, nil)[0].s
	r, err := s.Load(t.Context(), "old")
	if err != nil || r == nil {
		t.Fatalf("Load of a record made before: %+v, %v", r, err)
	}
	if err := del(t, s, "old", r.Rev); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ttl := st.(*jetstream.KeyValueBucketStatus).LimitMarkerTTL(); ttl != time.Hour {
		t.Errorf("the bucket's marker TTL: %v, want 1h", ttl)
	}
}

// TestHasSession: a record saved on one node is known to another's index
// once its watch brings it, and not after its delete; an id never saved
// has none. The broker then skips the delete a clean start would write
// for every client id (a replicated write on each clean CONNECT).
func TestHasSession(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b := nodes[0].s, nodes[1].s
	var _ broker.SessionIndex = a
	if a.HasSession("never") || b.HasSession("never") {
		t.Fatal("HasSession of an id never saved")
	}
	ch := make(chan result, 1)
	a.Save(&broker.SessionRecord{ClientID: "s", Filters: []string{"s/t"}, Expiry: 60},
		func(rev uint64, err error) { ch <- result{rev, err} })
	rev, err := waitResult(t, ch)
	if err != nil {
		t.Fatal(err)
	}
	if !a.HasSession("s") {
		t.Error("the saving node's index has no record after its Save")
	}
	if !b.HasSession("s") { // from its index, or read at the leader while the watch lags
		t.Error("another node does not know of the record right after its Save")
	}
	eventually(t, testWait, "the other node's index to have the record", func() bool {
		b.idx.mu.Lock()
		defer b.idx.mu.Unlock()
		e := b.idx.keys[registry.Key("s")]
		return e != nil && e.gone == 0
	})
	// An index that lags (its watch has not brought the record yet): the
	// key is read at the leader (fails when HasSession trusts the index).
	b.idx.mu.Lock()
	delete(b.idx.keys, registry.Key("s"))
	b.idx.mu.Unlock()
	if !b.HasSession("s") {
		t.Error("HasSession trusts an index that lags behind the bucket")
	}
	if err := del(t, b, "s", rev); err != nil {
		t.Fatal(err)
	}
	eventually(t, testWait, "both nodes to see the record gone", func() bool { return !a.HasSession("s") && !b.HasSession("s") })
}
