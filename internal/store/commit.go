package store

import (
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// maxIdleQueue is the capacity above which the committer drops a spare queue
// buffer after a burst instead of keeping it for the next batch.
const maxIdleQueue = 4096

// run is the committer: it owns every write to the file and every done
// callback. It returns once Close has been called and the queue is drained.
func (b *Bolt) run() {
	var (
		batch   []pending
		syncErr error // first commit error not yet reported to a Sync
	)
	defer func() {
		b.exitErr = syncErr
		close(b.exited)
	}()
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closed {
			b.wake.Wait()
		}
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		if d := b.opts.MaxBatchDelay; d > 0 && !b.closed {
			until := b.queuedAt.Add(d)
			b.mu.Unlock()
			b.linger(time.Until(until))
			b.mu.Lock()
		}
		batch, b.queue = b.queue, batch[:0]
		b.mu.Unlock()

		syncErr = b.commit(batch, syncErr)
		clear(batch)
		if cap(batch) > maxIdleQueue {
			batch = nil
		}
	}
}

// linger waits up to d for more Apply calls to join the batch, or until the
// store closes.
func (b *Bolt) linger(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.closing:
	}
}

// commit writes batch in one transaction, then calls its callbacks in order.
// syncErr is the first commit error not yet reported to a Sync; commit
// returns its new value.
func (b *Bolt) commit(batch []pending, syncErr error) error {
	var applies, ops, bytes uint64
	for i := range batch {
		p := &batch[i]
		if p.barrier {
			continue
		}
		if p.err = checkOps(p.ops); p.err != nil {
			continue
		}
		if len(p.ops) > 0 {
			applies++
		}
		for j := range p.ops {
			ops++
			bytes += uint64(len(p.ops[j].Key) + len(p.ops[j].Value))
		}
	}

	var err error
	if ops > 0 {
		start := time.Now()
		err = b.db.Update(func(tx *bbolt.Tx) error { return b.writeBatch(tx, batch) })
		took := time.Since(start)
		if err != nil {
			err = fmt.Errorf("store: commit %d ops to %s: %w", ops, b.path, err)
			b.stats.failed(took)
			if syncErr == nil {
				syncErr = err
			}
		} else {
			b.stats.committed(applies, ops, bytes, took)
		}
	}

	reported := false
	for i := range batch {
		p := &batch[i]
		switch {
		case p.barrier:
			p.done(syncErr)
			reported = true
		case p.done == nil:
		case p.err != nil:
			p.done(p.err)
		default:
			p.done(err)
		}
	}
	if reported {
		syncErr = nil
	}
	return syncErr
}

// writeBatch writes every well-formed Apply of batch to tx.
func (b *Bolt) writeBatch(tx *bbolt.Tx, batch []pending) error {
	for i := range batch {
		p := &batch[i]
		if p.barrier || p.err != nil {
			continue
		}
		for j := range p.ops {
			if err := writeOp(tx, &p.ops[j]); err != nil {
				return err
			}
		}
	}
	if b.commitHook != nil {
		return b.commitHook(tx)
	}
	return nil
}

// writeOp applies one checked op. Buckets other than the broker's are
// created on first Put.
func writeOp(tx *bbolt.Tx, op *Op) error {
	name := []byte(op.Bucket)
	bk := tx.Bucket(name)
	switch op.Kind {
	case Put:
		if bk == nil {
			var err error
			if bk, err = tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", op.Bucket, err)
			}
		}
		if err := bk.Put([]byte(op.Key), op.Value); err != nil {
			return fmt.Errorf("put %q in %s: %w", op.Key, op.Bucket, err)
		}
	case Delete:
		if bk == nil {
			return nil
		}
		if err := bk.Delete([]byte(op.Key)); err != nil {
			return fmt.Errorf("delete %q in %s: %w", op.Key, op.Bucket, err)
		}
	case DeletePrefix:
		if bk == nil {
			return nil
		}
		return deletePrefix(bk, op)
	}
	return nil
}

// deletePrefix removes every key of bk starting with op.Key. It seeks again
// after each delete, because a bbolt cursor must not step past a key it has
// just deleted.
func deletePrefix(bk *bbolt.Bucket, op *Op) error {
	p := []byte(op.Key)
	c := bk.Cursor()
	for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Seek(p) {
		if v == nil && bk.Bucket(k) != nil {
			return fmt.Errorf("delete prefix %q in %s: key %q is a nested bucket", op.Key, op.Bucket, k)
		}
		if err := c.Delete(); err != nil {
			return fmt.Errorf("delete prefix %q in %s: %w", op.Key, op.Bucket, err)
		}
	}
	return nil
}
