package broker

import (
	"sync/atomic"

	"github.com/culexmq/culex/internal/netpoll"
	"github.com/culexmq/culex/internal/store"
)

// storeWait completes once every store write of one routing pass (and the
// pass itself) is done: it starts with one count held by the router, each
// apply adds one, and fn runs with the first error when the count drops to
// zero. Store callbacks run in Apply order, so this is when the last write
// of the pass is durable.
type storeWait struct {
	n   atomic.Int32
	err atomic.Pointer[error]
	// to is told: a func(error), an Acker (PublishAck's) or the
	// *pending of an inbound publish that becomes ready. One field for
	// the three keeps pending, which embeds a storeWait, small.
	to any
}

// newStoreWait makes a wait that calls fn (nil: nothing).
func newStoreWait(fn func(error)) *storeWait {
	w := &storeWait{}
	if fn != nil {
		w.to = fn
	}
	w.n.Store(1)
	return w
}

// pending is the inbound publish w completes, or nil.
func (w *storeWait) pending() *pending {
	pe, _ := w.to.(*pending)
	return pe
}

// done releases one count.
func (w *storeWait) done(err error) { w.doneIn(err, nil) }

// doneIn is done; an acknowledgement it releases to the publisher is
// queued in fb when fb is not nil (AckBatch).
func (w *storeWait) doneIn(err error, fb *netpoll.Batch) {
	if err != nil {
		e := err // not &err: err would escape on every call
		w.err.CompareAndSwap(nil, &e)
	}
	if w.n.Add(-1) != 0 {
		return
	}
	var e error
	if p := w.err.Load(); p != nil {
		e = *p
	}
	switch to := w.to.(type) {
	case *pending:
		to.c.readyIn(to, e, fb)
	case func(error):
		to(e)
	case Acker:
		to.Done(e)
	}
}

// apply hands ops to the store; w, if not nil, waits for them.
func (b *Broker) apply(ops []store.Op, w *storeWait) {
	if w == nil {
		b.store.Apply(ops, b.logStoreErr)
		return
	}
	w.n.Add(1)
	b.store.Apply(ops, w.done)
}

func (b *Broker) logStoreErr(err error) {
	if err != nil {
		b.log.Error("store write failed", "err", err)
	}
}

// applyThen applies ops and calls then with the result once they are
// durable, on the store's goroutine. Stores fail ops inside Apply once
// closed, calling done on the caller's goroutine: then the callback does
// nothing and applyThen returns sync true with the error, and the caller,
// which may hold locks then needs, finishes itself.
func (b *Broker) applyThen(ops []store.Op, then func(error)) (err error, sync bool) {
	var state atomic.Int32 // 0: in Apply; 1: Apply returned; 2: done came first
	var serr atomic.Pointer[error]
	b.store.Apply(ops, func(err error) {
		serr.Store(&err)
		if state.CompareAndSwap(0, 2) {
			return
		}
		then(err)
	})
	if state.CompareAndSwap(0, 1) {
		return nil, false
	}
	return *serr.Load(), true
}
