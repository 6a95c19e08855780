// Package netpoll is Culex's socket engine: it reads connections only when
// they are readable (an idle one is parked in epoll with no goroutine and
// no buffer), writes each connection's queue of byte slices with batched
// writev calls on a few goroutines, and wakes a reader on request (Kick,
// Wake). It knows nothing of MQTT: the broker is its Handler.
//
// A connection is read by its Handler's Step, through Conn.Read, on a
// goroutine the engine starts when the socket is readable, its read
// deadline passes or it is woken; writes are queued with Conn.Enqueue
// from any goroutine. See docs/architecture.md.
package netpoll

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures an Engine.
type Config struct {
	// WriteTimeout bounds how long a socket may take no bytes while its
	// peer acknowledges none; 0: no bound.
	WriteTimeout time.Duration
	// MaxQueued is the byte bound of a connection's write queue for
	// bounded writes (Enqueue, OverBound).
	MaxQueued int
	// Bounds bound the reader goroutines of parked connections; the zero
	// value means the defaults.
	Bounds Bounds
	// OnPollError is told of every failed wait of the poller, which then
	// recovers on a new epoll set; nil: ignored.
	OnPollError func(error)
	// PollFault, when set, fails the poller's waits with what it returns
	// (tests).
	PollFault func() error
}

// Engine serves connections: one poller for the parked ones (made with
// the first), the flush queue and the flushers.
type Engine struct {
	cfg      Config
	wg       sync.WaitGroup // readers, flushers, lingers
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	flushers *workers[*Conn] // run Conn.flush
	fq       *flushQueue     // plain TCP writes that do not wait

	mu       sync.Mutex
	poller   *poller
	noPoller bool                      // making it failed: connections block in Read
	stopped  bool                      // Stop was called: Open refuses
	lingers  map[*net.TCPConn]struct{} // sockets draining before their close (linger)
}

// New returns an engine.
func New(cfg Config) *Engine {
	cfg.Bounds = cfg.Bounds.orDefaults()
	if cfg.OnPollError == nil {
		cfg.OnPollError = func(error) {}
	}
	e := &Engine{cfg: cfg, fq: newFlushQueue()}
	e.flushers = newWorkers((*Conn).flush)
	return e
}

// pollerLocked returns the engine's poller, making it on first use, or nil
// when this platform has none. e.mu is held.
func (e *Engine) pollerLocked() *poller {
	if e.poller == nil && !e.noPoller {
		p, err := newPoller(e.cfg.Bounds, e.cfg.OnPollError, e.cfg.PollFault)
		if err != nil { // no poller here: idle connections keep a reader goroutine
			e.noPoller = true
			return nil
		}
		e.poller = p
	}
	return e.poller
}

// Stop refuses new connections, stops the poller and cuts lingering
// closes short. Call it once every connection's reader has ended.
func (e *Engine) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	t := time.Now().Add(lingerStop)
	for tcp := range e.lingers {
		tcp.SetDeadline(t)
	}
	if e.poller != nil {
		e.poller.stop()
		e.poller = nil
	}
}

// Wait waits for every goroutine of the engine (readers, flushers,
// lingering closes) or for ctx, then lets its idle workers go.
func (e *Engine) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.flushers.stop()
	e.fq.turners.stop()
	return nil
}

// BytesIn and BytesOut count what every connection read and wrote.
func (e *Engine) BytesIn() uint64  { return e.bytesIn.Load() }
func (e *Engine) BytesOut() uint64 { return e.bytesOut.Load() }

// CanPeek says this platform reads connections without a goroutine each
// when they are idle (the poller may still be missing).
const CanPeek = canPeek
