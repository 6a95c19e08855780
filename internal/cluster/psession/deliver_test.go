package psession

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go"
)

// seen collects what a node's Deliver handed over, and where each start
// of a reader on demand put it (fn(seq, "", nil)).
type seen struct {
	mu     sync.Mutex
	seqs   []uint64
	msgs   []string
	starts []uint64
}

func (d *seen) fn(seq uint64, _ string, m *broker.Message) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m == nil {
		d.starts = append(d.starts, seq)
		return
	}
	d.seqs = append(d.seqs, seq)
	d.msgs = append(d.msgs, string(m.Payload))
}

func (d *seen) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seqs)
}

// check verifies that d saw exactly the sequences first..last, each once,
// in order.
func (d *seen) check(t testing.TB, who string, first, last uint64) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if uint64(len(d.seqs)) != last-first+1 {
		t.Errorf("%s: Deliver saw %d messages, want %d (%d..%d)", who, len(d.seqs), last-first+1, first, last)
	}
	for i, q := range d.seqs {
		if q != first+uint64(i) {
			t.Errorf("%s: Deliver's message %d has seq %d, want %d (a gap or a repeat)", who, i, q, first+uint64(i))
			return
		}
	}
}

// TestDeliverOrderAcrossNodes: two nodes Store at once; every node's
// reader gets every message once, in sequence order, whichever node
// stored it, and Head follows; each writer's messages have increasing
// sequences in call order.
func TestDeliverOrderAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	ds := make([]*seen, len(nodes))
	for i, nd := range nodes {
		ds[i] = &seen{}
		nd.s.Deliver(ds[i].fn)
	}
	first := nodes[0].s.Head() + 1
	const per = 200
	var wg sync.WaitGroup
	seqs := make([][]uint64, 2)
	for w := range 2 {
		wg.Go(func() {
			ch := make(chan result, per)
			for i := range per {
				nodes[w].s.Store(msg("t/"+fmt.Sprint(w), fmt.Sprintf("w%d-%d", w, i)), func(seq uint64, err error) { ch <- result{seq, err} })
			}
			for range per {
				r := <-ch
				if r.err != nil {
					t.Errorf("writer %d: %v", w, r.err)
					return
				}
				seqs[w] = append(seqs[w], r.seq)
			}
		})
	}
	wg.Wait()
	last := first + 2*per - 1
	for i, d := range ds {
		eventually(t, testWait, fmt.Sprintf("n%d's reader", i), func() bool { return d.len() >= 2*per })
		d.check(t, fmt.Sprintf("n%d", i), first, last)
		if h := nodes[i].s.Head(); h != last {
			t.Errorf("n%d: Head %d, want %d", i, h, last)
		}
	}
	// Each writer's payloads come in its call order.
	for w := range 2 {
		next := 0
		for _, p := range ds[2].msgs {
			if p[:2] == fmt.Sprintf("w%d", w) {
				if want := fmt.Sprintf("w%d-%d", w, next); p != want {
					t.Fatalf("writer %d: Deliver got %s, want %s", w, p, want)
				}
				next++
			}
		}
	}
}

// TestRecords: Save, Load from another node (read at the leader), a
// later Save replacing it, Delete; the index answers Persistent on every
// node, shared filters not at all (a group's messages are written for
// the member they go to, StoreFor).
func TestRecords(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b := nodes[0].s, nodes[1].s
	rec := &broker.SessionRecord{ClientID: "dev-1", Filters: []string{"sensors/+/temp", "$share/g/cmd/#"},
		Expiry: 3600, Cursor: 7, Data: []byte{1, 2, 3}}
	mustSave(t, a, rec)
	if !a.Persistent("sensors/x/temp") {
		t.Error("the saving node's index does not have the record once Save is done")
	}
	got, err := b.Load(t.Context(), "dev-1")
	if err != nil || got == nil || got.Cursor != 7 || string(got.Data) != "\x01\x02\x03" || len(got.Filters) != 2 {
		t.Fatalf("Load on another node: %+v, %v", got, err)
	}
	for _, nd := range nodes {
		eventually(t, testWait, "the index", func() bool { return nd.s.Persistent("sensors/x/temp") })
		if nd.s.Persistent("sensors/x/hum") || nd.s.Persistent("$share/g/cmd/x") || nd.s.Persistent("cmd/a/b") || nd.s.Persistent("cmd") {
			t.Error("Persistent matches a topic no filter matches")
		}
	}
	// Saves of one id take effect in call order.
	ch := make(chan error, 50)
	for i := range 50 {
		r := *rec
		r.Cursor = uint64(100 + i)
		a.Save(&r, func(_ uint64, err error) { ch <- err })
	}
	for range 50 {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if got, err := b.Load(t.Context(), "dev-1"); err != nil || got.Cursor != 149 {
		t.Fatalf("after 50 Saves: %+v, %v; want cursor 149", got, err)
	}
	// Delete.
	dch := make(chan error, 1)
	b.Delete("dev-1", 0, func(err error) { dch <- err })
	if err := <-dch; err != nil {
		t.Fatal(err)
	}
	if got, err := a.Load(t.Context(), "dev-1"); err != nil || got != nil {
		t.Fatalf("Load after Delete: %+v, %v", got, err)
	}
	for _, nd := range nodes {
		eventually(t, testWait, "the index to drop the record", func() bool { return !nd.s.Persistent("sensors/x/temp") })
	}
	if got, err := a.Load(t.Context(), "never-saved"); err != nil || got != nil {
		t.Fatalf("Load of an unknown id: %+v, %v", got, err)
	}
	// A long client id (its key is a digest) round-trips.
	long := &broker.SessionRecord{ClientID: string(make([]byte, 300)), Filters: []string{"l"}, Expiry: neverExpires}
	mustSave(t, b, long)
	if got, err := a.Load(t.Context(), long.ClientID); err != nil || got == nil || got.ClientID != long.ClientID {
		t.Fatalf("Load of a long id: %v, %v", got != nil, err)
	}
}

// TestReaderResumesAfterReconnect: the node's connection is cut while
// another node stores; once it is back, its reader goes on from Head()+1:
// nothing skipped, nothing repeated. When the log removed messages
// (max_log_bytes) before the reader could read them, the reader counts
// them as skipped and goes on from the log's first message.
func TestReaderResumesAfterReconnect(t *testing.T) {
	srv := startAloneServer(t)
	p := startProxy(t, srv.Addr().String())
	rnc, err := nats.Connect(p.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rnc.Close)
	wnc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wnc.Close)
	nodes := startStores(t, []*node{{nc: wnc}, {nc: rnc}}, func(c *Config) { c.MaxLogBytes = 256 << 10 })
	w, r := nodes[0].s, nodes[1].s
	d := &seen{}
	r.Deliver(d.fn)
	first := r.Head() + 1
	disconnected := func() bool { return !rnc.IsConnected() }

	for i := range 20 {
		mustStore(t, w, msg("t", fmt.Sprint(i)))
	}
	eventually(t, testWait, "the reader", func() bool { return d.len() == 20 })
	p.Cut()
	eventually(t, testWait, "the reader's connection to drop", disconnected)
	var last uint64
	for i := range 50 {
		last = mustStore(t, w, msg("t", fmt.Sprint(20+i)))
	}
	p.Restore()
	eventually(t, testWait, "the reader after the reconnection", func() bool { return r.Head() == last })
	d.check(t, "reader", first, last)
	if n := r.Counters().Skipped; n != 0 {
		t.Errorf("skipped %d", n)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Cut again; the log's limit removes messages the reader had not read.
	p.Cut()
	eventually(t, testWait, "the reader's connection to drop", disconnected)
	payload := strings.Repeat("x", 1024)
	var last2 uint64
	for range 400 {
		last2 = mustStore(t, w, msg("t", payload))
	}
	info, err := w.plog.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	gone := info.State.FirstSeq - last - 1
	if info.State.FirstSeq <= last+1 {
		t.Fatalf("the log kept everything from %d (first %d): no messages removed", last+1, info.State.FirstSeq)
	}
	p.Restore()
	eventually(t, testWait, "the reader after the reconnection", func() bool { return r.Head() == last2 })
	if n := r.Counters().Skipped; n != gone {
		t.Errorf("skipped %d, want %d (the log's first sequence is %d, the reader had read up to %d)", n, gone, info.State.FirstSeq, last)
	}
	d.mu.Lock()
	after := slices.Clone(d.seqs[last-first+1:])
	d.mu.Unlock()
	for i, q := range after {
		if q != info.State.FirstSeq+uint64(i) {
			t.Fatalf("after the gap, message %d has seq %d, want %d", i, q, info.State.FirstSeq+uint64(i))
		}
	}
	if uint64(len(after)) != last2-info.State.FirstSeq+1 {
		t.Errorf("after the gap the reader got %d messages, want %d", len(after), last2-info.State.FirstSeq+1)
	}
}

// TestDeliverBeforeStart: as the server does it, Deliver comes before
// Start; writes before Start fail with ErrNotReady; after Start the reader
// gets every message stored; Close leaves no goroutine of the Store.
func TestDeliverBeforeStart(t *testing.T) {
	nc := startAlone(t)
	s, err := New(Config{Conn: nc, Replicas: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := &seen{}
	s.Deliver(d.fn)
	if _, err := store(t, s, msg("t", "early")); !errors.Is(err, ErrNotReady) {
		t.Errorf("Store before Start: %v, want ErrNotReady", err)
	}
	if _, err := s.Load(t.Context(), "c"); !errors.Is(err, ErrNotReady) {
		t.Errorf("Load before Start: %v, want ErrNotReady", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	first := s.Head() + 1
	var last uint64
	for i := range 10 {
		last = mustStore(t, s, msg("t", fmt.Sprint(i)))
	}
	eventually(t, testWait, "the reader", func() bool { return d.len() == 10 })
	d.check(t, "reader", first, last)
	s.Close()
	if _, err := store(t, s, msg("t", "late")); err == nil {
		t.Error("Store after Close succeeded")
	}
	buf := make([]byte, 1<<20)
	eventually(t, testWait, "the Store's goroutines to end", func() bool {
		n := runtime.Stack(buf, true)
		return !strings.Contains(string(buf[:n]), "psession.(*")
	})
}
