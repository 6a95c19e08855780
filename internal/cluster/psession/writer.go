package psession

import (
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// op is one write: a message to the log or a record change. done runs
// once, with the sequence (a record's revision) the stream gave it, or an
// error.
type op struct {
	msg  *nats.Msg
	err  error // set: fail at once (not ready, queue full)
	done func(seq uint64, err error)
}

// writer sends the node's writes to JetStream in call order, as
// asynchronous publishes whose acknowledgements come to acked and failed.
// Store, StoreFor, Save and Delete must not wait for JetStream, and
// nats.go's publish can: at its limit of unacknowledged publishes, and
// when its buffer is full and it writes to the connection itself. So a
// write is published at once on the caller's goroutine only when nothing
// is queued or being published and neither limit is near (direct); else
// it is queued for the writer's goroutine. A direct publish may still
// wait for nats.go's connection lock while its flusher hands a buffer to
// the embedded server, as the router's publishes do. Both publish under
// pubMu, and a write goes out directly only when the queue is empty, so
// the stream leader receives them, and gives sequences, in call order on
// one connection. A publish is never retried by nats.go (no responders
// fails it), as a retry could overtake later writes.
type writer struct {
	s    *Store
	wake chan struct{}

	// pubMu is held while publishing (run's batch, a direct write); taken
	// before mu. acked and failed never take it.
	pubMu sync.Mutex

	mu      sync.Mutex
	queue   []*op
	pending map[*nats.Msg]*op // published, waiting for the acknowledgement
	closed  bool              // run has returned: add fails at once
}

func (w *writer) init(s *Store) {
	w.s = s
	w.wake = make(chan struct{}, 1)
	w.pending = make(map[*nats.Msg]*op)
}

// add queues o; past MaxQueued it fails o with ErrBusy (still on the
// writer's goroutine: done runs on the caller's only after Close, when no
// goroutine is left to run it).
func (w *writer) add(o *op) {
	if w.direct(o) {
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		o.done(0, ErrClosed)
		return
	}
	if o.err == nil && len(w.queue) >= w.s.cfg.MaxQueued {
		o.msg, o.err = nil, ErrBusy
		w.s.stats.Busy.Add(1)
	}
	w.queue = append(w.queue, o)
	w.mu.Unlock()
	w.wakeUp()
}

func (w *writer) wakeUp() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run publishes the queued writes until the Store closes.
func (w *writer) run() {
	s := w.s
	for {
		w.pubMu.Lock()
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		for i, o := range batch {
			if s.ctx.Err() != nil {
				for _, o := range batch[i:] {
					o.done(0, ErrClosed)
				}
				break
			}
			w.publish(o)
		}
		w.pubMu.Unlock()
		select {
		case <-s.ctx.Done():
			w.pubMu.Lock() // a direct write in flight is registered first
			w.mu.Lock()
			rest := w.queue
			w.queue, w.closed = nil, true
			w.mu.Unlock()
			w.pubMu.Unlock()
			for _, o := range rest {
				o.done(0, ErrClosed)
			}
			return
		case <-w.wake:
		}
	}
}

// Bounds of a direct write: nats.go's unacknowledged publishes stay below
// directPending (it waits at WithPublishAsyncMaxPending, 4096), and its
// buffer with the write below directBuffered (it writes to the
// connection itself past 32 KiB; the flusher goroutine does before).
const (
	directPending  = 2048
	directBuffered = 16 << 10
)

// direct publishes o on the caller's goroutine when nothing is queued or
// being published (the order is kept), the Store is ready and open, and
// the publish cannot wait (the bounds above); it reports whether it did.
// done never runs on the caller's goroutine: a publish that fails at once
// is queued with its error for the writer's goroutine.
func (w *writer) direct(o *op) bool {
	s := w.s
	if o.err != nil || !s.ready.Load() || !w.pubMu.TryLock() {
		return false
	}
	defer w.pubMu.Unlock()
	w.mu.Lock()
	idle := !w.closed && len(w.queue) == 0
	w.mu.Unlock()
	if !idle || s.ctx.Err() != nil || s.js.PublishAsyncPending() >= directPending {
		return false
	}
	if n, err := s.nc.Buffered(); err != nil || n+len(o.msg.Data)+len(o.msg.Subject) >= directBuffered {
		return false
	}
	err := w.send(o)
	if err == nil {
		s.stats.Direct.Add(1)
		return true
	}
	w.mu.Lock()
	_, mine := w.pending[o.msg]
	delete(w.pending, o.msg)
	w.mu.Unlock()
	if !mine {
		return true // failed, whose handler called done
	}
	o.err = err
	return false // add queues it: run calls its done with err
}

func (w *writer) publish(o *op) {
	if o.err == nil && !w.s.ready.Load() {
		o.err = ErrNotReady
	}
	if o.err != nil {
		o.done(0, o.err)
		return
	}
	if err := w.send(o); err != nil {
		w.finish(o.msg, 0, err)
	}
}

// send registers o as waiting for its acknowledgement, then publishes it.
func (w *writer) send(o *op) error {
	// Registered before the publish: its acknowledgement may come
	// before PublishMsgAsync returns.
	w.mu.Lock()
	w.pending[o.msg] = o
	w.mu.Unlock()
	_, err := w.s.js.PublishMsgAsync(o.msg, jetstream.WithRetryAttempts(0), jetstream.WithStallWait(w.s.cfg.Timeout))
	return err
}

// finish calls the done of m's write once.
func (w *writer) finish(m *nats.Msg, seq uint64, err error) {
	w.mu.Lock()
	o := w.pending[m]
	delete(w.pending, m)
	w.mu.Unlock()
	if o != nil {
		o.done(seq, err)
	}
}

// acked and failed are the JetStream context's handlers of asynchronous
// publishes: an acknowledgement comes once the stream's leader and a
// majority of its replicas stored the message (with sync always, on
// disk); a failure is an error of the stream, a timeout (Timeout) or the
// connection lost.
func (w *writer) acked(_ jetstream.JetStream, m *nats.Msg, a *jetstream.PubAck) {
	w.finish(m, a.Sequence, nil)
}

func (w *writer) failed(_ jetstream.JetStream, m *nats.Msg, err error) {
	w.finish(m, 0, err)
}

// waiting is the number of writes queued or waiting for their
// acknowledgement.
func (w *writer) waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue) + len(w.pending)
}

// failAll fails the writes still waiting for an acknowledgement (Close).
func (w *writer) failAll(err error) {
	w.mu.Lock()
	p := w.pending
	w.pending = make(map[*nats.Msg]*op)
	w.mu.Unlock()
	for _, o := range p {
		o.done(0, err)
	}
}
