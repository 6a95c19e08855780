package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

func openBolt(t *testing.T, dir string, opts BoltOptions) *Bolt {
	t.Helper()
	b, err := OpenBolt(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBoltFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	b := openBolt(t, dir, BoltOptions{})
	if b.Path() != filepath.Join(dir, FileName) {
		t.Errorf("Path() = %s", b.Path())
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, b.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		// The umask may only remove bits, never add them.
		if got := fi.Mode(); got&^want != 0 || got.IsDir() != want.IsDir() {
			t.Errorf("%s: mode %v, want at most %v", path, got, want)
		}
	}
}

func TestBoltDataDirLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	openBolt(t, dir, BoltOptions{})
	start := time.Now()
	b2, err := OpenBolt(dir, BoltOptions{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		b2.Close()
		t.Fatal("second OpenBolt of one data dir succeeded")
	}
	if !errors.Is(err, bberrors.ErrTimeout) || !strings.Contains(err.Error(), "data dir "+dir+" is in use by another culex process") {
		t.Errorf("second OpenBolt: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second OpenBolt took %v to give up", d)
	}
}

func TestBoltCommitFailure(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "data"), BoltOptions{})
	boom := errors.New("disk on fire")
	var fail atomic.Bool
	b.commitHook = func(*bbolt.Tx) error {
		if fail.Load() {
			return boom
		}
		return nil
	}
	mustApply(t, b, put(Sessions, "before", "1"))

	// Hold the committer in a callback so that the next Applies share a batch.
	held, release := make(chan struct{}), make(chan struct{})
	b.Apply(nil, func(error) { close(held); <-release })
	<-held
	fail.Store(true)
	const n = 10
	errs := make(chan error, n+1)
	for i := range n {
		b.Apply([]Op{put(Sessions, "lost"+string(rune('a'+i)), "x")}, func(err error) { errs <- err })
	}
	b.Apply([]Op{{Kind: 99, Bucket: Sessions, Key: "k"}}, func(err error) { errs <- err })
	close(release)
	for i := range n {
		if err := <-errs; !errors.Is(err, boom) {
			t.Errorf("apply %d in the failed batch: %v, want the commit error", i, err)
		}
	}
	if err := <-errs; !errors.Is(err, ErrInvalidOp) {
		t.Errorf("invalid apply in the failed batch: %v, want ErrInvalidOp", err)
	}
	fail.Store(false)

	if err := b.Sync(); !errors.Is(err, boom) {
		t.Errorf("first Sync after the failure: %v, want the commit error", err)
	}
	if err := b.Sync(); err != nil {
		t.Errorf("second Sync after the failure: %v, want nil", err)
	}
	mustApply(t, b, put(Sessions, "after", "2"))
	wantScan(t, b, Sessions, "", kv{"after", "2"}, kv{"before", "1"})
	if st := b.Stats(); st.FailedCommits != 1 || st.Commits != 2 {
		t.Errorf("stats after one failed commit: %+v", st)
	}
}

func TestBoltCloseReportsUnsyncedFailure(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "data"), BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	b.commitHook = func(*bbolt.Tx) error { return boom }
	b.Apply([]Op{put(Wills, "w", "x")}, nil)
	if err := b.Close(); !errors.Is(err, boom) {
		t.Errorf("Close after an unreported commit failure: %v", err)
	}
	if err := b.Close(); !errors.Is(err, boom) {
		t.Errorf("second Close: %v, want the same result", err)
	}
}

func TestBoltGroupCommit(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "data"), BoltOptions{})
	const n = 2000
	value := make([]byte, 200)
	for i := range n {
		b.Apply([]Op{{Kind: Put, Bucket: Messages, Key: MessageKey("c", uint64(i)), Value: value}}, nil)
	}
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Applies != n || st.Ops != n {
		t.Errorf("stats count %d applies and %d ops, want %d", st.Applies, st.Ops, n)
	}
	if want := uint64(n * (len(MessageKey("c", 0)) + len(value))); st.Bytes != want {
		t.Errorf("stats count %d bytes, want %d", st.Bytes, want)
	}
	if st.Commits > n/4 {
		t.Errorf("%d applies queued at once took %d commits", n, st.Commits)
	}
	var hist uint64
	for _, c := range st.BatchSizes {
		hist += c
	}
	if hist != st.Commits || st.MaxBatch < uint64(st.AvgBatch()) || st.LastCommit <= 0 || st.AvgCommit() <= 0 {
		t.Errorf("inconsistent stats: %+v, avg batch %.1f", st, st.AvgBatch())
	}
	t.Logf("%d applies in %d commits, max batch %d, avg %.1f, avg commit %v", n, st.Commits, st.MaxBatch, st.AvgBatch(), st.AvgCommit())
}

func TestBoltMaxBatchDelay(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "data"), BoltOptions{MaxBatchDelay: 50 * time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			if err := apply(t, b, put(Sessions, string(rune('a'+g)), "v")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := scan(t, b, Sessions, ""); len(got) != 8 {
		t.Errorf("%d sessions, want 8", len(got))
	}
	// Close must not wait out the delay of what it drains.
	b.Apply([]Op{put(Sessions, "z", "v")}, nil)
	start := time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close with a batch lingering took %v", time.Since(start))
}

// TestNoGoroutineLeak checks that Close waits for every goroutine a store
// started.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, im := range impls() {
		for range 5 {
			s := im.open(t, filepath.Join(t.TempDir(), "data"))
			mustApply(t, s, put(Sessions, "k", "v"))
			s.Apply([]Op{put(Sessions, "k2", "v")}, func(error) {})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after closing every store, %d before\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
	}
}

// TestBoltApplyDoesNotWaitForCommit holds a commit inside its transaction,
// as a slow fsync would, and checks that Apply keeps returning meanwhile.
func TestBoltApplyDoesNotWaitForCommit(t *testing.T) {
	b := openBolt(t, filepath.Join(t.TempDir(), "data"), BoltOptions{})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.commitHook = func(*bbolt.Tx) error {
		once.Do(func() { close(entered); <-release })
		return nil
	}
	first := make(chan error, 1)
	b.Apply([]Op{put(Sessions, "first", "v")}, func(err error) { first <- err })
	<-entered
	const n = 1000
	errs := make(chan error, n)
	for i := range n {
		b.Apply([]Op{put(Messages, MessageKey("c", uint64(i)), "m")}, func(err error) { errs <- err })
	}
	select {
	case <-first:
		t.Fatal("done called while its commit was held")
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Applies != n+1 || st.Commits > 4 {
		t.Errorf("%d applies queued behind a slow commit: stats %+v", n, st)
	}
}

// TestBoltMatchesMemory applies the same random op sequences to Bolt and
// Memory and compares what they hold.
func TestBoltMatchesMemory(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bolt := openBolt(t, filepath.Join(t.TempDir(), "data"), BoltOptions{})
	mem := NewMemory()
	defer mem.Close()
	ids := []string{"a", "ab", "abc", "b", "", "\x00", "\xff"}
	buckets := []Bucket{Messages, Sessions}
	for round := range 50 {
		var ops []Op
		for range rng.IntN(20) + 1 {
			id := ids[rng.IntN(len(ids))]
			bk := buckets[rng.IntN(len(buckets))]
			key := MessageKey(id, rng.Uint64N(8))
			if bk == Sessions && id != "" {
				key = id
			}
			switch r := rng.IntN(10); {
			case r < 6:
				ops = append(ops, put(bk, key, fmt.Sprint(round, r)))
			case r < 8:
				ops = append(ops, del(bk, key))
			default:
				ops = append(ops, delPrefix(bk, SessionPrefix(id)[:rng.IntN(len(id)+2)]))
			}
		}
		errB, errM := apply(t, bolt, ops...), apply(t, mem, ops...)
		if (errB == nil) != (errM == nil) {
			t.Fatalf("round %d: bolt %v, memory %v", round, errB, errM)
		}
		for _, bk := range buckets {
			if got, want := scan(t, bolt, bk, ""), scan(t, mem, bk, ""); !slices.Equal(got, want) {
				t.Fatalf("round %d: %s holds %q in bolt, %q in memory", round, bk, got, want)
			}
		}
	}
}
