package store

import (
	"sort"
	"strings"
	"sync"
)

var _ Store = (*Memory)(nil)

// Memory is a Store that keeps everything in memory, for tests and for nodes
// without a data directory. Nothing survives the process.
//
// Apply takes effect at once, under the store's lock, and queues done; one
// goroutine of the store, owned by Memory and waited for by Close, calls the
// queued callbacks in Apply order. done therefore never runs on the caller's
// goroutine nor while any lock is held, so a caller may hold its own locks
// across Apply, and done may call Apply. The one exception is Apply after
// Close, which calls done(ErrClosed) before returning, because no goroutine
// is left to do it.
type Memory struct {
	exited chan struct{} // closed when the callback goroutine returns
	wake   sync.Cond     // signalled when callbacks are queued or the store closes; L is &mu

	mu      sync.Mutex
	data    map[Bucket]map[string][]byte
	pending []callback // callbacks not yet called, in Apply order
	closed  bool
}

// callback is a queued done call.
type callback struct {
	done func(error)
	err  error
}

// NewMemory returns an empty Memory store. Close it to stop its goroutine.
func NewMemory() *Memory {
	m := &Memory{
		exited: make(chan struct{}),
		data:   make(map[Bucket]map[string][]byte),
	}
	m.wake.L = &m.mu
	go m.run()
	return m
}

// Apply applies ops at once and queues done(nil), or done with an error
// wrapping ErrInvalidOp if an op is malformed, in which case none of ops take
// effect. Values are copied.
func (m *Memory) Apply(ops []Op, done func(error)) {
	err := checkOps(ops)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		if done != nil {
			done(ErrClosed)
		}
		return
	}
	if err == nil {
		for i := range ops {
			m.applyLocked(&ops[i])
		}
	}
	if done != nil {
		m.pending = append(m.pending, callback{done: done, err: err})
		m.wake.Signal()
	}
	m.mu.Unlock()
}

// applyLocked applies one checked op. m.mu must be held.
func (m *Memory) applyLocked(op *Op) {
	b := m.data[op.Bucket]
	switch op.Kind {
	case Put:
		if b == nil {
			b = make(map[string][]byte)
			m.data[op.Bucket] = b
		}
		b[op.Key] = append([]byte(nil), op.Value...)
	case Delete:
		delete(b, op.Key)
	case DeletePrefix:
		for k := range b {
			if strings.HasPrefix(k, op.Key) {
				delete(b, k)
			}
		}
	}
}

// Scan calls fn for every key of bucket starting with prefix, in key order.
// It copies the matching entries under the lock and calls fn without it, so
// fn may call Apply (but not Sync or Close, nor block on a done callback).
// value must not be modified or retained. An error from fn stops the scan
// and is returned unchanged.
func (m *Memory) Scan(bucket Bucket, prefix string, fn func(key string, value []byte) error) error {
	type entry struct {
		key   string
		value []byte
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	var entries []entry
	for k, v := range m.data[bucket] {
		if strings.HasPrefix(k, prefix) {
			entries = append(entries, entry{k, v}) // stored values are never modified in place
		}
	}
	m.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	for _, e := range entries {
		if err := fn(e.key, e.value); err != nil {
			return err
		}
	}
	return nil
}

// Sync returns once every done callback queued before it has been called.
// It must not be called from a done callback.
func (m *Memory) Sync() error {
	ch := make(chan struct{})
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.pending = append(m.pending, callback{done: func(error) { close(ch) }})
	m.wake.Signal()
	m.mu.Unlock()
	<-ch
	return nil
}

// Close calls every queued callback, stops the store's goroutine and waits
// for it. Closing a closed Memory does nothing. It must not be called from a
// done callback.
func (m *Memory) Close() error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		m.wake.Signal()
	}
	m.mu.Unlock()
	<-m.exited
	return nil
}

// run calls queued callbacks in order until the store is closed and drained.
func (m *Memory) run() {
	defer close(m.exited)
	var batch []callback
	for {
		m.mu.Lock()
		for len(m.pending) == 0 && !m.closed {
			m.wake.Wait()
		}
		if len(m.pending) == 0 {
			m.mu.Unlock()
			return
		}
		batch, m.pending = m.pending, batch[:0]
		m.mu.Unlock()
		for i := range batch {
			batch[i].done(batch[i].err)
			batch[i] = callback{}
		}
	}
}
