package store

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait on a store in tests.
const waitTimeout = 20 * time.Second

// impl is a Store implementation under test.
type impl struct {
	name string
	// open opens the store kept in dir; stores without a disk ignore dir.
	open    func(t *testing.T, dir string) Store
	durable bool // reopening dir sees what was committed
}

func impls() []impl {
	return []impl{
		{name: "memory", open: func(*testing.T, string) Store { return NewMemory() }},
		{name: "bolt", durable: true, open: func(t *testing.T, dir string) Store {
			t.Helper()
			b, err := OpenBolt(dir, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
	}
}

// conformance is the suite every Store must pass.
var conformance = []struct {
	name string
	fn   func(t *testing.T, im impl)
}{
	{"PutScan", testPutScan},
	{"Overwrite", testOverwrite},
	{"Delete", testDelete},
	{"DeletePrefix", testDeletePrefix},
	{"MessageKeyOrder", testMessageKeyOrder},
	{"OpsInOneApplyInOrder", testOpsInOneApply},
	{"CallbackOrder", testCallbackOrder},
	{"ConcurrentAppliers", testConcurrentAppliers},
	{"Sync", testSync},
	{"InvalidOp", testInvalidOp},
	{"DoneMayApply", testDoneMayApply},
	{"ScanStops", testScanStops},
	{"CloseDrains", testCloseDrains},
	{"ApplyAfterClose", testApplyAfterClose},
	{"Reopen", testReopen},
}

func TestConformance(t *testing.T) {
	for _, im := range impls() {
		t.Run(im.name, func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, im) })
			}
		})
	}
}

// openTemp opens im in a fresh directory and closes it when the test ends.
func openTemp(t *testing.T, im impl) (Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s := im.open(t, dir)
	t.Cleanup(func() { s.Close() })
	return s, dir
}

// apply applies ops and waits for their done callback.
func apply(t *testing.T, s Store, ops ...Op) error {
	t.Helper()
	ch := make(chan error, 1)
	s.Apply(ops, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("done not called within %v", waitTimeout)
		return nil
	}
}

// mustApply applies ops and fails the test if they fail.
func mustApply(t *testing.T, s Store, ops ...Op) {
	t.Helper()
	if err := apply(t, s, ops...); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// kv is one scanned entry.
type kv struct{ k, v string }

// scan returns the entries of bucket under prefix, in scan order.
func scan(t *testing.T, s Store, bucket Bucket, prefix string) []kv {
	t.Helper()
	var out []kv
	err := s.Scan(bucket, prefix, func(k string, v []byte) error {
		out = append(out, kv{k, string(v)})
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s %q: %v", bucket, prefix, err)
	}
	return out
}

func put(b Bucket, k, v string) Op { return Op{Kind: Put, Bucket: b, Key: k, Value: []byte(v)} }
func del(b Bucket, k string) Op    { return Op{Kind: Delete, Bucket: b, Key: k} }
func delPrefix(b Bucket, p string) Op {
	return Op{Kind: DeletePrefix, Bucket: b, Key: p}
}

func wantScan(t *testing.T, s Store, bucket Bucket, prefix string, want ...kv) {
	t.Helper()
	if got := scan(t, s, bucket, prefix); !slices.Equal(got, want) {
		t.Errorf("scan %s %q = %q, want %q", bucket, prefix, got, want)
	}
}

func testPutScan(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	mustApply(t, s,
		put(Sessions, "c2", "s2"), put(Sessions, "c1", "s1"), put(Sessions, "d", "s3"),
		put(Retained, "a/b", "r1"), put("custom", "k", "v"))
	wantScan(t, s, Sessions, "", kv{"c1", "s1"}, kv{"c2", "s2"}, kv{"d", "s3"})
	wantScan(t, s, Sessions, "c", kv{"c1", "s1"}, kv{"c2", "s2"})
	wantScan(t, s, Sessions, "c1", kv{"c1", "s1"})
	wantScan(t, s, Sessions, "x")
	wantScan(t, s, Retained, "", kv{"a/b", "r1"})
	wantScan(t, s, Wills, "")
	wantScan(t, s, "custom", "", kv{"k", "v"})
	wantScan(t, s, "never-written", "")
}

func testOverwrite(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	mustApply(t, s, put(Retained, "t", "old"))
	mustApply(t, s, put(Retained, "t", "new"))
	wantScan(t, s, Retained, "", kv{"t", "new"})
	mustApply(t, s, put(Retained, "t", ""))
	wantScan(t, s, Retained, "", kv{"t", ""})
}

func testDelete(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	mustApply(t, s, put(Wills, "a", "1"), put(Wills, "b", "2"))
	mustApply(t, s, del(Wills, "a"), del(Wills, "missing"), del("never-written", "x"))
	wantScan(t, s, Wills, "", kv{"b", "2"})
}

func testDeletePrefix(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	var ops []Op
	for _, id := range []string{"a", "ab", "b", "\xff"} {
		for seq := range uint64(3) {
			ops = append(ops, put(Messages, MessageKey(id, seq), id+strconv.FormatUint(seq, 10)))
		}
	}
	mustApply(t, s, ops...)
	mustApply(t, s, delPrefix(Messages, SessionPrefix("a")), delPrefix(Messages, SessionPrefix("nobody")))
	wantScan(t, s, Messages, SessionPrefix("a"))
	if got := scan(t, s, Messages, SessionPrefix("ab")); len(got) != 3 {
		t.Errorf("client ab, whose id has a's as prefix, kept %d messages, want 3", len(got))
	}
	if got := scan(t, s, Messages, ""); len(got) != 9 {
		t.Errorf("%d messages left, want 9", len(got))
	}
	mustApply(t, s, delPrefix(Messages, ""), delPrefix("never-written", ""))
	wantScan(t, s, Messages, "")
}

func testMessageKeyOrder(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	seqs := []uint64{256, 1, 1 << 40, 2, 255}
	for _, seq := range seqs {
		mustApply(t, s, put(Messages, MessageKey("c", seq), strconv.FormatUint(seq, 10)))
	}
	var got []string
	for _, e := range scan(t, s, Messages, SessionPrefix("c")) {
		got = append(got, e.v)
	}
	want := []string{"1", "2", "255", "256", strconv.FormatUint(1<<40, 10)}
	if !slices.Equal(got, want) {
		t.Errorf("messages scanned in order %q, want %q", got, want)
	}
}

func testOpsInOneApply(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	mustApply(t, s,
		put(Sessions, "k", "1"), del(Sessions, "k"), put(Sessions, "k", "2"),
		put(Messages, MessageKey("c", 1), "m"), delPrefix(Messages, SessionPrefix("c")),
		put(Messages, MessageKey("c", 2), "m2"))
	wantScan(t, s, Sessions, "", kv{"k", "2"})
	wantScan(t, s, Messages, "", kv{MessageKey("c", 2), "m2"})
}

func testCallbackOrder(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	const n = 1000
	var (
		mu  sync.Mutex
		got []int
	)
	for i := range n {
		s.Apply([]Op{put(Sessions, "k", strconv.Itoa(i))}, func(err error) {
			if err != nil {
				t.Errorf("apply %d: %v", i, err)
			}
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
		})
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d callbacks called by the time Sync returned, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("callback %d called in position %d", v, i)
		}
	}
	wantScan(t, s, Sessions, "", kv{"k", strconv.Itoa(n - 1)})
}

// testConcurrentAppliers checks that ops take effect, and callbacks run, in
// one order across goroutines: every applier overwrites one shared key, so
// the value left must be that of the Apply whose callback ran last.
func testConcurrentAppliers(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	const appliers, each = 16, 200
	var (
		mu    sync.Mutex
		order []string        // applies in callback order
		next  = map[int]int{} // per applier: the next i its callbacks must report
		wg    sync.WaitGroup
	)
	for g := range appliers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("%02d-%04d", g, i)
				s.Apply([]Op{put(Retained, "shared", id), put(Messages, MessageKey(strconv.Itoa(g), uint64(i)), id)}, func(err error) {
					if err != nil {
						t.Errorf("apply %s: %v", id, err)
					}
					mu.Lock()
					defer mu.Unlock()
					if next[g] != i {
						t.Errorf("applier %d: callback %d ran when %d was due", g, i, next[g])
					}
					next[g] = i + 1
					order = append(order, id)
				})
			}
		})
	}
	wg.Wait()
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != appliers*each {
		t.Fatalf("%d callbacks, want %d", len(order), appliers*each)
	}
	wantScan(t, s, Retained, "", kv{"shared", order[len(order)-1]})
	if got := scan(t, s, Messages, ""); len(got) != appliers*each {
		t.Errorf("%d messages stored, want %d", len(got), appliers*each)
	}
}

func testSync(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	for i := range 100 {
		s.Apply([]Op{put(Sessions, fmt.Sprintf("%03d", i), "v")}, nil)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Sync(); err != nil {
				t.Errorf("sync: %v", err)
			}
		})
	}
	wg.Wait()
	if got := scan(t, s, Sessions, ""); len(got) != 100 {
		t.Errorf("%d sessions after Sync, want 100", len(got))
	}
	if err := s.Sync(); err != nil {
		t.Errorf("sync with nothing queued: %v", err)
	}
}

func testInvalidOp(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	bad := [][]Op{
		{put(Sessions, "ok", "v"), {Kind: 0, Bucket: Sessions, Key: "k"}},
		{put(Sessions, "ok", "v"), put(Sessions, "", "v")},
		{put(Sessions, "ok", "v"), del(Sessions, "")},
		{put(Sessions, "ok", "v"), put("", "k", "v")},
		{put(Sessions, "ok", "v"), put(Sessions, string(make([]byte, MaxKeySize+1)), "v")},
	}
	errs := make([]chan error, len(bad))
	for i, ops := range bad {
		errs[i] = make(chan error, 1)
		s.Apply(ops, func(err error) { errs[i] <- err })
	}
	mustApply(t, s, put(Sessions, "good", "v")) // shares a batch with the bad ones
	for i, ch := range errs {
		if err := <-ch; !errors.Is(err, ErrInvalidOp) {
			t.Errorf("bad apply %d: err %v, want ErrInvalidOp", i, err)
		}
	}
	wantScan(t, s, Sessions, "", kv{"good", "v"})
	if err := s.Sync(); err != nil {
		t.Errorf("sync after invalid ops: %v", err)
	}
}

func testDoneMayApply(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	nested := make(chan error, 1)
	mustApply(t, s, put(Wills, "a", "1"))
	s.Apply([]Op{put(Wills, "b", "2")}, func(err error) {
		s.Apply([]Op{del(Wills, "b")}, func(err error) { nested <- err })
	})
	select {
	case err := <-nested:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Apply from a done callback did not complete")
	}
	wantScan(t, s, Wills, "", kv{"a", "1"})
}

func testScanStops(t *testing.T, im impl) {
	s, _ := openTemp(t, im)
	mustApply(t, s, put(Sessions, "a", "1"), put(Sessions, "b", "2"), put(Sessions, "c", "3"))
	stop := errors.New("stop")
	var seen []string
	err := s.Scan(Sessions, "", func(k string, v []byte) error {
		seen = append(seen, k)
		if k == "b" {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Errorf("scan returned %v, want fn's error unchanged", err)
	}
	if !slices.Equal(seen, []string{"a", "b"}) {
		t.Errorf("scan visited %q after fn failed, want [a b]", seen)
	}
	// fn may apply; the write is visible to the next Scan.
	err = s.Scan(Sessions, "a", func(k string, v []byte) error {
		s.Apply([]Op{put(Sessions, k+"-copy", string(bytes.Clone(v)))}, nil)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantScan(t, s, Sessions, "a", kv{"a", "1"}, kv{"a-copy", "1"})
}

func testCloseDrains(t *testing.T, im impl) {
	s := im.open(t, filepath.Join(t.TempDir(), "data"))
	const n = 500
	var (
		mu     sync.Mutex
		called int
	)
	for i := range n {
		s.Apply([]Op{put(Messages, MessageKey("c", uint64(i)), "m")}, func(err error) {
			if err != nil {
				t.Errorf("apply %d before Close: %v", i, err)
			}
			mu.Lock()
			called++
			mu.Unlock()
		})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if called != n {
		t.Errorf("%d callbacks called by the time Close returned, want %d", called, n)
	}
}

func testApplyAfterClose(t *testing.T, im impl) {
	s := im.open(t, filepath.Join(t.TempDir(), "data"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, s, put(Sessions, "k", "v")); !errors.Is(err, ErrClosed) {
		t.Errorf("apply after Close: %v, want ErrClosed", err)
	}
	s.Apply([]Op{put(Sessions, "k", "v")}, nil) // must not panic
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("sync after Close: %v, want ErrClosed", err)
	}
	if err := s.Scan(Sessions, "", func(string, []byte) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("scan after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testReopen(t *testing.T, im impl) {
	if !im.durable {
		t.Skip("not durable")
	}
	dir := filepath.Join(t.TempDir(), "data")
	s := im.open(t, dir)
	for seq := range uint64(5) {
		s.Apply([]Op{put(Messages, MessageKey("gone", seq), "m"), put(Messages, MessageKey("gone2", seq), "m")}, nil)
	}
	s.Apply([]Op{put(Sessions, "c", "state"), put(Retained, "t/1", "r"), put(Wills, "w", "will")}, nil)
	s.Apply([]Op{delPrefix(Messages, SessionPrefix("gone"))}, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = im.open(t, dir)
	defer s.Close()
	wantScan(t, s, Sessions, "", kv{"c", "state"})
	wantScan(t, s, Retained, "", kv{"t/1", "r"})
	wantScan(t, s, Wills, "", kv{"w", "will"})
	if got := scan(t, s, Messages, ""); len(got) != 5 || got[0].k != MessageKey("gone2", 0) {
		t.Errorf("messages after reopen: %q, want the 5 of gone2", got)
	}
}
