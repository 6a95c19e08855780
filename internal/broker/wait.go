package broker

import (
	"sync/atomic"

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
	fn  func(error)
	pe  *pending // instead of fn: an inbound publish that becomes ready
}

func newStoreWait(fn func(error)) *storeWait {
	w := &storeWait{fn: fn}
	w.n.Store(1)
	return w
}

// done releases one count.
func (w *storeWait) done(err error) {
	if err != nil {
		w.err.CompareAndSwap(nil, &err)
	}
	if w.n.Add(-1) != 0 {
		return
	}
	var e error
	if p := w.err.Load(); p != nil {
		e = *p
	}
	switch {
	case w.pe != nil:
		w.pe.c.ready(w.pe, e)
	case w.fn != nil:
		w.fn(e)
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
