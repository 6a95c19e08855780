// Package listener accepts MQTT connections over TCP, TLS, WebSocket and
// secure WebSocket, optionally behind a PROXY protocol v1/v2 header, and hands
// each connection to the broker as a net.Conn carrying a plain MQTT byte stream.
// A PROXY protocol listener serves only the peers in its trusted_proxies
// and refuses every other connection before reading from it.
//
// A plain TCP connection is handed over as the raw *net.TCPConn (even behind a
// PROXY header, which is consumed byte-exactly), so the broker can wait for
// readability through syscall.Conn without holding a buffer. TLS connections
// are *tls.Conn; WebSocket connections are this package's own minimal RFC 6455
// server conn, which also implements BuffersWriter: a writer holding several
// slices should prefer WriteBuffers there (one frame) to net.Buffers (one frame
// per slice).
//
// The WebSocket conn carries binary frames only, unmasks client frames,
// answers pings, echoes a close frame's code and then returns io.EOF, and
// refuses text frames (close 1003) and protocol errors (close 1002). Each
// Write is one unmasked binary frame. Between frames it holds no buffer.
package listener

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// ConnInfo describes an accepted connection.
type ConnInfo struct {
	Listener string               // the listener's URL as configured
	Scheme   string               // tcp, ssl, ws or wss
	Remote   net.Addr             // the client's address; from the PROXY header when there is one
	Local    net.Addr             // the address the client connected to; from the PROXY header when there is one
	TLS      *tls.ConnectionState // nil for plain connections
}

// Handler serves one connection; it owns conn and must close it. It is called
// on a goroutine of its own.
type Handler func(conn net.Conn, info ConnInfo)

// BuffersWriter is implemented by connections that can write several byte
// slices as one unit more cheaply than one Write per slice: the WebSocket conn
// sends them as a single binary frame. For *net.TCPConn use net.Buffers, which
// becomes one writev.
type BuffersWriter interface {
	// WriteBuffers writes the concatenation of bufs and returns how many of
	// those bytes were written. It does not modify bufs.
	WriteBuffers(bufs [][]byte) (int, error)
}

// Schemes as reported in ConnInfo.Scheme and returned by ParseURL.
const (
	SchemeTCP = "tcp"
	SchemeSSL = "ssl"
	SchemeWS  = "ws"
	SchemeWSS = "wss"
)

// handshakeTimeout bounds everything between accept and handing the
// connection to the handler: waiting for a handshake worker, PROXY header,
// TLS handshake, WebSocket upgrade (tls.handshake_timeout).
const handshakeTimeout = 10 * time.Second

// DefaultMaxPendingHandshakes is tls.max_pending_handshakes' default.
const DefaultMaxPendingHandshakes = 4096

// pending is an accepted connection waiting for its handshake.
type pending struct {
	c  net.Conn
	at time.Time
}

// Listener is one bound MQTT endpoint. New binds it, Serve accepts on it and
// Close stops it.
type Listener struct {
	cfg     config.Listener
	scheme  string
	path    string    // WebSocket path; empty for tcp and ssl
	tls     *tlsState // ssl and wss
	h       Handler
	log     *slog.Logger
	ln      net.Listener
	timeout time.Duration // handshakeTimeout; shorter in tests

	// The handshake queue: accepted connections whose first bytes have
	// arrived, waiting for a worker. admitted counts those and the ones
	// still waiting for their first bytes (await); it is at most
	// cap(queue), so a send on queue never blocks.
	queue    chan pending
	admitted atomic.Int32
	workers  int          // the most handshakes at once
	running  atomic.Int32 // worker goroutines
	idle     atomic.Int32 // workers waiting on the queue
	overflow atomic.Uint64
	expired  atomic.Uint64
	served   atomic.Uint64 // handshakes run
	full     rateLog
	// summed are the counts at the last summary (summarize).
	summed struct{ served, overflow, expired uint64 }

	// trusted are the peers allowed to send a PROXY header (trusted_proxies).
	trusted   []netip.Prefix
	untrusted atomic.Uint64 // connections refused for coming from elsewhere
	refusals  rateLog

	done chan struct{} // closed by Close
	wg   sync.WaitGroup

	// mu guards the fields below it.
	mu       sync.Mutex
	closed   bool
	pending  map[net.Conn]struct{} // accepted, not yet handed to h
	closeErr error
}

// New parses cfg.URL, loads its TLS material and binds the socket, so that
// Addr and URL are known (port 0 picks a free port) before Serve is called.
func New(cfg config.Listener, h Handler, logger *slog.Logger) (*Listener, error) {
	if h == nil {
		return nil, fmt.Errorf("listener %s: nil handler", cfg.URL)
	}
	scheme, hostport, path, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", cfg.URL, err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{
		cfg:     cfg,
		scheme:  scheme,
		path:    path,
		h:       h,
		log:     logger.With("listener", cfg.URL),
		timeout: handshakeTimeout,
		workers: cfg.TLS.HandshakeWorkers,
		done:    make(chan struct{}),
		pending: make(map[net.Conn]struct{}),
	}
	if cfg.ProxyProtocol {
		if l.trusted, err = cfg.TrustedPrefixes(); err != nil {
			return nil, fmt.Errorf("listener %s: %w", cfg.URL, err)
		}
		if len(l.trusted) == 0 {
			return nil, fmt.Errorf("listener %s: trusted_proxies: required with proxy_protocol", cfg.URL)
		}
	}
	if cfg.TLS.HandshakeTimeout > 0 {
		l.timeout = cfg.TLS.HandshakeTimeout
	}
	if l.workers <= 0 {
		l.workers = 64 * runtime.GOMAXPROCS(0)
	}
	maxPending := cfg.TLS.MaxPendingHandshakes
	if maxPending <= 0 {
		maxPending = DefaultMaxPendingHandshakes
	}
	l.queue = make(chan pending, maxPending)
	if scheme == SchemeSSL || scheme == SchemeWSS {
		if l.tls, err = newTLSState(cfg.TLS, l.log); err != nil {
			return nil, fmt.Errorf("listener %s: %w", cfg.URL, err)
		}
	}
	if l.ln, err = net.Listen("tcp", hostport); err != nil {
		return nil, fmt.Errorf("listener %s: %w", cfg.URL, err)
	}
	return l, nil
}

// Addr is the bound address, with the actual port when the URL asked for 0.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// URL is the canonical URL of the bound socket, with the actual port, such as
// tcp://127.0.0.1:41234 or ws://127.0.0.1:41235/mqtt.
func (l *Listener) URL() string {
	return l.scheme + "://" + l.ln.Addr().String() + l.path
}

// Serve accepts connections until Close and returns nil after Close. A
// connection with a handshake (PROXY header, TLS, WebSocket) waits for its
// first bytes in the runtime's poller, then in the handshake queue for a
// worker that runs its handshakes; the handler then runs on a fresh goroutine.
// Temporary accept errors (such as running out of file descriptors) are
// logged and retried with backoff.
func (l *Listener) Serve() error {
	defer l.wg.Wait()
	if l.tls != nil {
		l.wg.Add(1)
		go l.watchCerts()
	}
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() {
				return nil
			}
			if !isTemporary(err) {
				return fmt.Errorf("listener %s: accept: %w", l.cfg.URL, err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		if !l.cfg.ProxyProtocol && l.scheme == SchemeTCP {
			go l.h(c, l.info(c))
			continue
		}
		if !l.track(c) {
			c.Close()
			return nil
		}
		l.wg.Add(1)
		if int(l.admitted.Add(1)) > cap(l.queue) {
			l.admitted.Add(-1)
			l.refuseFull(c)
			continue
		}
		p := pending{c, time.Now()}
		if readable(c, false) || l.cfg.ProxyProtocol && !l.trustedPeer(c.RemoteAddr()) {
			l.enqueue(p) // an untrusted peer is refused at once, not awaited
		} else {
			go l.await(p)
		}
	}
}

// enqueue hands p, admitted, to the handshake workers.
func (l *Listener) enqueue(p pending) {
	l.queue <- p // never blocks: admitted <= cap(queue)
	l.spawn()
}

// await waits, without a worker, until the first bytes of p (its
// ClientHello or PROXY header) have arrived, and queues it then. A peer
// that sends nothing is closed when the handshake timeout passes: silent
// connections hold a slot of the queue, never a worker.
func (l *Listener) await(p pending) {
	if p.c.SetReadDeadline(p.at.Add(l.timeout)) == nil && readable(p.c, true) {
		l.enqueue(p)
		return
	}
	l.admitted.Add(-1)
	if l.untrack(p.c) {
		l.expired.Add(1)
	}
	p.c.Close()
	l.wg.Done()
}

// watchCerts reloads the certificate files when they change, every
// tls.reload_interval, until Close.
func (l *Listener) watchCerts() {
	defer l.wg.Done()
	d := l.cfg.TLS.ReloadInterval
	if d <= 0 {
		d = DefaultReloadInterval
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.tls.reload()
		case <-l.done:
			return
		}
	}
}

// refuseFull closes a connection the handshake queue has no room for,
// before reading a byte of it.
func (l *Listener) refuseFull(c net.Conn) {
	l.untrack(c)
	// Counted and logged before the peer can see the reset.
	l.overflow.Add(1)
	if n, ok := l.full.allow(time.Now(), 10*time.Second); ok {
		l.log.Warn("handshake queue full: connections refused before their handshake",
			"refused", n, "max_pending_handshakes", cap(l.queue))
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0) // a reset: nothing to send, no TIME_WAIT
	}
	c.Close()
	l.wg.Done()
}

// summarize logs, when the last handshake worker ends, what the burst
// since the last such line came to, if it refused anyone.
func (l *Listener) summarize() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := struct{ served, overflow, expired uint64 }{l.served.Load(), l.overflow.Load(), l.expired.Load()}
	served, full, expired := now.served-l.summed.served, now.overflow-l.summed.overflow, now.expired-l.summed.expired
	l.summed = now
	if full > 0 || expired > 0 {
		l.log.Warn("handshake storm over", "handshakes", served, "refused_queue_full", full,
			"expired_in_queue", expired, "max_pending_handshakes", cap(l.queue), "handshake_workers", l.workers)
	}
}

// Refused counts the connections closed unserved: the handshake queue was
// full, or they waited longer than the handshake timeout.
func (l *Listener) Refused() (full, expired uint64) { return l.overflow.Load(), l.expired.Load() }

// spawn starts a handshake worker unless enough run: as many as
// handshake_workers, while fewer are idle than connections are queued.
func (l *Listener) spawn() {
	for {
		n := l.running.Load()
		if int(n) >= l.workers || int(l.idle.Load()) >= len(l.queue) {
			return
		}
		if l.running.CompareAndSwap(n, n+1) {
			stormWorkerStarted()
			go l.work()
			return
		}
	}
}

// workerIdle is how long a handshake worker waits for the next connection
// before it ends: the grown stacks of a storm's workers go soon after it.
const workerIdle = 200 * time.Millisecond

// work runs handshakes from the queue, oldest first, until it has been
// idle for workerIdle.
func (l *Listener) work() {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		l.idle.Add(1)
		select {
		case p := <-l.queue:
			l.idle.Add(-1)
			l.admitted.Add(-1)
			if time.Since(p.at) >= l.timeout {
				// The client has given up by now, or is about to.
				l.untrack(p.c)
				p.c.Close()
				l.wg.Done()
				l.expired.Add(1)
			} else {
				l.serveConn(p.c, p.at)
				storm.handshakes.Add(1)
				l.served.Add(1)
			}
			t.Reset(workerIdle)
		case <-t.C:
			l.idle.Add(-1)
			if l.running.Add(-1) == 0 {
				l.summarize()
			}
			stormWorkerDone()
			// A connection queued after the timer fired and before the
			// count went down found this worker still counted.
			if len(l.queue) > 0 {
				l.spawn()
			}
			return
		case <-l.done:
			l.idle.Add(-1)
			l.running.Add(-1)
			stormWorkerDone()
			for {
				select {
				case p := <-l.queue:
					p.c.Close()
					l.wg.Done()
				default:
					return
				}
			}
		}
	}
}

// Close stops accepting and aborts connections still in their handshakes.
// Connections already handed to the handler are the handler's to close.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return l.closeErr
	}
	l.closed = true
	close(l.done)
	for c := range l.pending {
		c.Close()
	}
	if err := l.ln.Close(); err != nil {
		l.closeErr = fmt.Errorf("listener %s: close: %w", l.cfg.URL, err)
	}
	return l.closeErr
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// track records c as in its handshakes; false means the listener is closed.
func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

// untrack forgets c; false means Close has closed it (or is about to).
func (l *Listener) untrack(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pending, c)
	return !l.closed
}

// serveConn runs the handshakes for raw and then hands the connection over.
// It is owned by Serve until the handover, and by the handler after it.
func (l *Listener) serveConn(raw net.Conn, accepted time.Time) {
	conn, info, err := l.handshake(raw, accepted)
	ok := l.untrack(raw)
	if err != nil || !ok {
		if err != nil {
			l.log.Debug("connection rejected", "remote", raw.RemoteAddr(), "err", err)
		}
		raw.Close()
		l.wg.Done()
		return
	}
	l.wg.Done()
	// The handshakes grew this goroutine's stack, and Go keeps a grown stack
	// long after: the handler gets a fresh, small one for the connection's life.
	go l.h(conn, info)
}

func (l *Listener) info(raw net.Conn) ConnInfo {
	return ConnInfo{
		Listener: l.cfg.URL,
		Scheme:   l.scheme,
		Remote:   raw.RemoteAddr(),
		Local:    raw.LocalAddr(),
	}
}

// handshake turns an accepted socket into the conn and ConnInfo for the
// handler, all within l.timeout.
func (l *Listener) handshake(raw net.Conn, accepted time.Time) (net.Conn, ConnInfo, error) {
	info := l.info(raw)
	if l.cfg.ProxyProtocol && !l.trustedPeer(raw.RemoteAddr()) {
		l.refuseUntrusted(raw.RemoteAddr())
		return nil, info, errUntrustedPeer
	}
	if err := raw.SetDeadline(accepted.Add(l.timeout)); err != nil {
		return nil, info, fmt.Errorf("set handshake deadline: %w", err)
	}
	if l.cfg.ProxyProtocol {
		h, err := readProxyHeader(raw)
		if err != nil {
			return nil, info, fmt.Errorf("proxy header: %w", err)
		}
		if h.src != nil {
			info.Remote, info.Local = h.src, h.dst
		}
	}
	conn := raw
	if l.tls != nil {
		tc, st, err := l.tls.handshakeTLS(raw)
		if err != nil {
			return nil, info, fmt.Errorf("tls handshake: %w", err)
		}
		info.TLS = st
		conn = tc
	}
	if l.scheme == SchemeWS || l.scheme == SchemeWSS {
		wc, err := upgrade(conn, l.path)
		if err != nil {
			return nil, info, fmt.Errorf("websocket upgrade: %w", err)
		}
		conn = wc
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, info, fmt.Errorf("clear handshake deadline: %w", err)
	}
	return conn, info, nil
}

// isTemporary reports whether an accept error is worth retrying.
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}
