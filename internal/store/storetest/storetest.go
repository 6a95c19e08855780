// Package storetest checks from outside a store that what it acknowledged
// is on stable storage: that when a done callback reports success, the
// store's file has no page left that the kernel has not written to the
// device. A store that skipped its fsync (bbolt's NoSync) or called back
// before committing fails these checks, where reading the data back, even
// after a kill -9, cannot tell: the page cache survives a process.
//
// The kernel reports a file's dirty pages through cachestat(2) (Linux 6.5);
// tmpfs has no device and reports none. RequireTracking skips a test where
// the check would prove nothing.
package storetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/culexmq/culex/internal/store"
)

// ErrUnsupported means the kernel cannot report a file's dirty pages.
var ErrUnsupported = errors.New("storetest: no cachestat(2) (Linux 6.5 or later) to count a file's dirty pages")

// Unsynced returns how many pages of the file at path are in the page cache
// but not yet on the device: dirty, or being written back.
func Unsynced(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return unsynced(f)
}

// RequireTracking skips the test unless the kernel reports the dirty pages
// of files in dir: it writes a probe file there and expects it dirty until
// it is synced.
func RequireTracking(t testing.TB, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "storetest-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	n, err := unsynced(f)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Skipf("storetest: the filesystem of %s reports no dirty pages (tmpfs?): an fsync cannot be told from none", dir)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n, err = unsynced(f); err != nil || n != 0 {
		t.Fatalf("storetest: probe %s has %d unsynced pages after fsync (%v)", filepath.Base(f.Name()), n, err)
	}
}

// Store wraps a store whose data lives in one file. Every done callback of
// Apply first checks that the file has no unsynced page (a failure fails
// the test) and then calls the caller's done. Hold keeps Apply calls from
// the wrapped store until Release, so a test can see what a caller does
// while its write is not yet durable.
type Store struct {
	store.Store
	t    testing.TB
	path string

	durable     atomic.Int64 // callbacks that reported success, checked synced
	heldDurable atomic.Bool  // the first held Apply was acknowledged, checked synced

	mu   sync.Mutex
	hold func(ops []store.Op) bool // nil: pass every Apply through
	held []heldApply               // in Apply order, once one matched hold
	seen chan struct{}             // closed when the first Apply is held
}

type heldApply struct {
	ops  []store.Op
	done func(error)
}

// Wrap wraps s, whose data lives in the file at path.
func Wrap(t testing.TB, s store.Store, path string) *Store {
	return &Store{Store: s, t: t, path: path}
}

// Apply passes ops to the wrapped store, or holds them (with every later
// Apply, to keep the order) once one matched Hold. done runs after the
// check that the file is synced.
func (s *Store) Apply(ops []store.Op, done func(error)) {
	s.mu.Lock()
	hold := s.hold != nil && (len(s.held) > 0 || s.hold(ops))
	first := hold && len(s.held) == 0
	checked := func(err error) {
		if err == nil && s.checkSynced(ops) && first {
			s.heldDurable.Store(true)
		}
		if done != nil {
			done(err)
		}
	}
	if hold {
		if first {
			close(s.seen)
		}
		s.held = append(s.held, heldApply{ops, checked})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.Store.Apply(ops, checked)
}

// checkSynced reports whether the file is synced, failing the test if not.
func (s *Store) checkSynced(ops []store.Op) bool {
	n, err := Unsynced(s.path)
	if err != nil {
		s.t.Errorf("storetest: %v", err)
		return false
	}
	if n > 0 {
		s.t.Errorf("store acknowledged %d ops while %d pages of %s were not on the device (no fsync before the callback)", len(ops), n, s.path)
		return false
	}
	s.durable.Add(1)
	return true
}

// Durable is how many Apply calls have been acknowledged so far, each
// checked synced.
func (s *Store) Durable() int64 { return s.durable.Load() }

// HeldDurable reports whether the Apply that matched Hold has been
// acknowledged, checked synced. The check runs before the caller's done, so
// whatever the caller does on done happens after HeldDurable is true.
func (s *Store) HeldDurable() bool { return s.heldDurable.Load() }

// Hold makes Apply keep, from the first call whose ops match, every call
// until Release. It returns a channel closed when that first call arrives.
func (s *Store) Hold(match func(ops []store.Op) bool) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = match
	s.seen = make(chan struct{})
	return s.seen
}

// Release passes the held Apply calls to the wrapped store, in order, and
// stops holding. It holds a lock while it does, so that no Apply overtakes
// them: the wrapped store must not call done inside Apply (Bolt does only
// once closed).
func (s *Store) Release() {
	s.mu.Lock()
	held := s.held
	s.hold, s.held = nil, nil
	// Still under mu, so an Apply racing with Release cannot overtake the
	// held ones.
	for _, h := range held {
		s.Store.Apply(h.ops, h.done)
	}
	s.mu.Unlock()
}

// String names the wrapped file, for test logs.
func (s *Store) String() string { return fmt.Sprintf("storetest.Store(%s)", s.path) }
