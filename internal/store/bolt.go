package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

var _ Store = (*Bolt)(nil)

// FileName is the name of the bbolt file inside the data directory.
const FileName = "culex.db"

// defaultLockTimeout is how long OpenBolt waits for another process to
// release the data directory.
const defaultLockTimeout = time.Second

// BoltOptions configures a Bolt store. The zero value means the defaults.
type BoltOptions struct {
	// MaxBatchDelay is how long the first Apply of a batch may wait in the
	// queue for more to join it before the committer commits. Zero commits
	// as soon as the previous commit has finished: concurrent Apply calls
	// still share a commit, because they queue while the previous one
	// fsyncs. A delay trades latency for fewer, larger commits, which only
	// pays when commits are expensive and appliers are few but steady.
	MaxBatchDelay time.Duration
	// LockTimeout is how long OpenBolt waits for another process holding
	// the data directory's file lock. Zero means one second.
	LockTimeout time.Duration
}

// Bolt is the single-node Store: one bbolt file, <dir>/culex.db, written by
// one committer goroutine.
//
// Apply only appends to a queue. The committer takes everything queued,
// writes it in one read-write transaction, commits it (bbolt fsyncs the data
// pages, then the meta page), and then calls the done callbacks in Apply
// order. Callbacks run on the committer goroutine with no lock held, so a
// caller may hold its own locks across Apply, and done may call Apply; done
// must not block, nor call Sync, Scan or Close, which wait for the committer.
// The one exception is Apply after Close, which calls done(ErrClosed) before
// returning, because no committer is left to do it.
//
// Apply keeps ops and their Values, without copying them, until they are
// committed: the caller must not modify them after Apply.
type Bolt struct {
	db         *bbolt.DB
	path       string
	opts       BoltOptions
	stats      boltStats
	closing    chan struct{} // closed by Close; cuts a MaxBatchDelay wait short
	exited     chan struct{} // closed when the committer returns
	closeOnce  sync.Once
	closeErr   error
	exitErr    error                    // commit error not yet reported by a Sync; written by the committer before exited closes
	commitHook func(tx *bbolt.Tx) error // tests: runs last in every write transaction; set before the first Apply
	wake       sync.Cond                // signalled when the queue becomes non-empty or the store closes; L is &mu

	mu       sync.Mutex
	queue    []pending // Apply calls and Sync barriers not yet taken by the committer
	queuedAt time.Time // when queue last became non-empty; kept only with a MaxBatchDelay
	closed   bool
}

// pending is one queued Apply call or Sync barrier.
type pending struct {
	ops     []Op
	done    func(error)
	barrier bool  // a Sync waiting for what was queued before it
	err     error // set by the committer when ops are malformed
}

// OpenBolt opens or creates the store in dir, creating dir with mode 0700 and
// the file with mode 0600, and takes an exclusive file lock on it so that a
// second process cannot open the same data directory.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	path := filepath.Join(dir, FileName)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: timeout,
		// Durability comes from the fsyncs in Commit; these only choose how
		// free pages are tracked. The freelist is not written on commit
		// (fewer pages to sync) and is rebuilt by scanning on open.
		NoSync:         false,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("store: data dir %s is in use by another culex process (no lock on %s within %v): %w", dir, path, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		db.Close()
		return nil, err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range []Bucket{Sessions, Messages, Bodies, Retained, Wills} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	b := &Bolt{
		db:      db,
		path:    path,
		opts:    opts,
		closing: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	b.wake.L = &b.mu
	go b.run()
	return b, nil
}

// Path is the bbolt file's path.
func (b *Bolt) Path() string { return b.path }

// Apply queues ops and returns without waiting for the disk. done, if not
// nil, gets nil once ops are committed and fsynced; an error wrapping
// ErrInvalidOp if an op is malformed (none of ops are then written, and the
// rest of the batch is unaffected); or, if the commit fails, an error wrapping
// the cause, shared by every Apply of that batch. The store keeps committing
// later batches after a failure.
func (b *Bolt) Apply(ops []Op, done func(error)) {
	if len(ops) == 0 && done == nil {
		return
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		if done != nil {
			done(ErrClosed)
		}
		return
	}
	b.enqueueLocked(pending{ops: ops, done: done})
	b.mu.Unlock()
}

// enqueueLocked queues p for the committer. b.mu must be held.
func (b *Bolt) enqueueLocked(p pending) {
	if len(b.queue) == 0 && b.opts.MaxBatchDelay > 0 {
		b.queuedAt = time.Now()
	}
	b.queue = append(b.queue, p)
	b.wake.Signal()
}

// Sync returns once everything applied before it is committed and its
// callbacks have been called. It returns the first commit error since the
// previous Sync returned, if any, so a failure is reported to its callbacks
// and to the next Sync. It must not be called from a done callback.
func (b *Bolt) Sync() error {
	ch := make(chan error, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.enqueueLocked(pending{barrier: true, done: func(err error) { ch <- err }})
	b.mu.Unlock()
	return <-ch
}

// Scan waits until everything applied before it is committed, then calls fn
// for every key of bucket starting with prefix, in key order, inside one
// read transaction. value points into the memory-mapped file and is valid
// only during fn: copy it to keep it, and never modify it. fn may call Apply
// but not Sync, Scan or Close. An error from fn stops the scan and is returned
// unchanged.
func (b *Bolt) Scan(bucket Bucket, prefix string, fn func(key string, value []byte) error) error {
	// An empty Apply is a barrier that leaves commit errors to Sync.
	ch := make(chan error, 1)
	b.Apply(nil, func(err error) { ch <- err })
	if err := <-ch; errors.Is(err, ErrClosed) {
		return ErrClosed
	}
	var fnErr error
	err := b.db.View(func(tx *bbolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		p := []byte(prefix)
		c := bk.Cursor()
		for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
			if v == nil && bk.Bucket(k) != nil {
				continue // nested buckets are not ours
			}
			if fnErr = fn(string(k), v); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("store: scan %s in %s: %w", bucket, b.path, err)
	}
	return nil
}

// Close commits everything queued, calls its callbacks, stops the committer
// and closes the file. It returns the first commit error not yet reported by
// a Sync, joined with any error closing the file. Later calls return the
// same result. It must not be called from a done callback.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		close(b.closing)
		b.wake.Signal()
		b.mu.Unlock()
		<-b.exited
		b.closeErr = b.exitErr
		if err := b.db.Close(); err != nil {
			b.closeErr = errors.Join(b.closeErr, fmt.Errorf("store: close %s: %w", b.path, err))
		}
	})
	return b.closeErr
}

// syncDir fsyncs dir, so that a file just created in it survives a crash:
// bbolt syncs the file's contents but not its directory entry.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: open data dir to sync it: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: sync data dir %s: %w", dir, err)
	}
	return nil
}

// hasPrefix is bytes.HasPrefix without the import.
func hasPrefix(s, prefix []byte) bool {
	return len(s) >= len(prefix) && string(s[:len(prefix)]) == string(prefix)
}
