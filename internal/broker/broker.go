// Package broker is the MQTT 3.1, 3.1.1 and 5.0 session state machine and
// router of one Culex node: sessions, QoS flows, retained messages, wills,
// keep-alive and $SYS. Its sockets are run by internal/netpoll. See
// docs/broker.md for the behaviour, the lock order and the overflow policy.
package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/culexmq/culex/internal/netpoll"
	"github.com/culexmq/culex/internal/store"
)

// Options configures a Broker. The zero value of every field but Config
// means its default.
type Options struct {
	Config         config.MQTT
	AllowAnonymous bool
	SysInterval    time.Duration // $SYS publish period; 0 disables
	Store          store.Store   // nil: store.NewMemory(), closed by Shutdown
	Logger         *slog.Logger  // nil: discard
	Authenticator  Authenticator // nil: allow all (subject to AllowAnonymous)
	Authorizer     Authorizer    // nil: allow all
	Interceptors   []Interceptor
	Version        string
	// Hooks are optional event callbacks (see Hook).
	Hooks []Hook
	// MaxOutboundBytes bounds the bytes queued for one connection's socket;
	// over it QoS 0 is dropped and QoS 1/2 wait in the session queue.
	// 0 means 1 MiB or twice Config.MaxPacketSize, whichever is larger.
	MaxOutboundBytes int
	// SuperuserTakeover lets a client whose ClientInfo.Superuser is set take
	// over a session of another owner (auth.superuser_takeover).
	SuperuserTakeover bool
	// ClientIDBinding binds client ids to owners (auth.client_id_binding):
	// "" or none, equal (the client id is the owner or the verified
	// certificate's CN) or prefix (it starts with one of them).
	ClientIDBinding string
	// BridgeClientIDs makes mqtt.bridge_clients match client ids, where
	// clients do not authenticate (no auth backend). Otherwise, with an
	// Authenticator, it matches only sessions' owners.
	BridgeClientIDs bool
	// Registry, when set (a cluster), records which node holds each
	// client id and the wills of connected clients; nil keeps CONNECT
	// local.
	Registry Registry
	// RetainedReplica, when set (a cluster), receives the retained
	// messages this node's clients set; other nodes' arrive through
	// ApplyRetained.
	RetainedReplica RetainedReplica
	// SessionStore, when set (a cluster), keeps the persistent sessions
	// and the QoS 1/2 messages they are owed instead of Store
	// (csession.go); nil keeps them in Store.
	SessionStore SessionStore
}

// Broker is one node's MQTT broker core.
type Broker struct {
	failedAcks failedAcks
	opts       Options
	cfg        config.MQTT
	log        *slog.Logger
	store      store.Store
	bodies     bodyTable // stored message bodies and their references (bodies.go)
	ownStore   bool
	outMax     int
	stats      counters

	dropHooks  []DropHook
	connHooks  []ConnectHook
	discHooks  []DisconnectHook
	subHooks   []SubscribeHook
	unsubHooks []UnsubscribeHook
	expHooks   []SessionExpiredHook
	// refuseHooks and refusedBy: refused CONNECTs (refuse.go).
	refuseHooks []RefuseHook
	refusedBy   refusals

	subs     *topic.Index[*session, subOpts]
	shared   *topic.SharedIndex[*session, subOpts]
	remote   *topic.Index[RemoteRoute, byte]
	retained *topic.Retained[*Message]
	sharedRT atomic.Pointer[sharedRouterBox] // the cluster's shared subscriptions (route.go); nil alone

	// Draining (drain.go): new connections refused; the Server Reference.
	draining atomic.Bool
	drainRef atomic.Pointer[string]

	// bridges are mqtt.bridge_clients: sessions with the bridge queue limits.
	bridges map[string]bool

	started time.Time
	idSeq   atomic.Uint64
	sysStop chan struct{}
	wg      sync.WaitGroup // timer callbacks, $SYS (the engine waits for its own)

	mu       sync.Mutex
	sessions map[string]*session
	conns    map[*conn]struct{}
	timers   map[*time.Timer]struct{} // session expiry and will delay timers
	running  bool                     // Start was called
	stopping bool                     // Shutdown began: new connections are refused
	closing  bool                     // connections are gone: new goroutines are refused
	// ids serialises the session takeover step of CONNECT per client id.
	ids keyLocks
	// owned counts each identity's persistent sessions.
	owned ownedSessions
	// retMu orders retained index updates with their store writes.
	retMu  sync.Mutex
	retUse retainedUse
	// engine runs the sockets (internal/netpoll); made by the first
	// connection.
	engine  *netpoll.Engine
	readers netpoll.Bounds // the engine's; tests change them
	// pollFault fails the poller's waits with what it returns (tests).
	pollFault func() error
	// seams, when set, runs tests' code between steps that race.
	seams atomic.Pointer[seams]
	// cstore is Options.SessionStore; clog its reader's state, loading
	// the CONNECTs that may use it at once (csession.go).
	cstore  SessionStore
	clog    clusterLog
	loading loadSlots
}

// seams are the points where tests run the other side of a race.
type seams struct {
	tookSession func(*session) // accept, after takeSession
	ending      func(*session) // disconnected, before it ends a session without expiry
}

// engineLocked returns the broker's socket engine, making it on first use.
// b.mu is held.
func (b *Broker) engineLocked() *netpoll.Engine {
	if b.engine == nil {
		b.engine = netpoll.New(netpoll.Config{
			WriteTimeout: b.cfg.WriteTimeout,
			MaxQueued:    b.outMax,
			Bounds:       b.readers,
			OnPollError:  b.pollFailed,
			PollFault:    b.pollFault,
		})
	}
	return b.engine
}

// pollFailed logs and counts a failed wait of the poller, which recovers
// from it on a new epoll set.
func (b *Broker) pollFailed(err error) {
	b.stats.pollErrors.Add(1)
	b.log.Error("poller: wait failed; recovering on a new epoll set", "err", err)
}

// New returns a broker; Start loads its state and starts its timers.
func New(opts Options) (*Broker, error) {
	cfg := opts.Config
	if cfg.MaxQoS > 2 {
		return nil, fmt.Errorf("broker: max qos %d", cfg.MaxQoS)
	}
	switch cfg.QueueOverflow {
	case "", "drop_new", "drop_oldest":
	default:
		return nil, fmt.Errorf("broker: queue overflow policy %q: want drop_new or drop_oldest", cfg.QueueOverflow)
	}
	switch opts.ClientIDBinding {
	case "", BindNone, BindEqual, BindPrefix:
	default:
		return nil, fmt.Errorf("broker: client id binding %q: want none, equal or prefix", opts.ClientIDBinding)
	}
	b := &Broker{
		opts:     opts,
		cfg:      cfg,
		log:      opts.Logger,
		store:    opts.Store,
		cstore:   opts.SessionStore,
		subs:     topic.NewIndex[*session, subOpts](),
		shared:   topic.NewSharedIndex[*session, subOpts](),
		remote:   topic.NewIndex[RemoteRoute, byte](),
		retained: topic.NewRetained[*Message](),
		sessions: make(map[string]*session),
		conns:    make(map[*conn]struct{}),
		timers:   make(map[*time.Timer]struct{}),
		sysStop:  make(chan struct{}),
		loading:  loadSlots{ch: make(chan struct{}, maxLoading)},
	}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if b.store == nil {
		b.store, b.ownStore = store.NewMemory(), true
	}
	b.outMax = opts.MaxOutboundBytes
	if b.outMax <= 0 {
		b.outMax = max(1<<20, 2*int(cfg.MaxPacketSize))
	}
	for _, h := range opts.Hooks {
		b.addHook(h)
	}
	b.bridges = bridgeClients(cfg.BridgeClients)
	return b, nil
}

func (b *Broker) addHook(h Hook) {
	if x, ok := h.(DropHook); ok {
		b.dropHooks = append(b.dropHooks, x)
	}
	if x, ok := h.(ConnectHook); ok {
		b.connHooks = append(b.connHooks, x)
	}
	if x, ok := h.(DisconnectHook); ok {
		b.discHooks = append(b.discHooks, x)
	}
	if x, ok := h.(SubscribeHook); ok {
		b.subHooks = append(b.subHooks, x)
	}
	if x, ok := h.(UnsubscribeHook); ok {
		b.unsubHooks = append(b.unsubHooks, x)
	}
	if x, ok := h.(RefuseHook); ok {
		b.refuseHooks = append(b.refuseHooks, x)
	}
	if x, ok := h.(SessionExpiredHook); ok {
		b.expHooks = append(b.expHooks, x)
	}
}

// Start loads persistent sessions, retained messages and pending wills from
// the store, and starts the $SYS publisher.
func (b *Broker) Start() error {
	b.mu.Lock()
	if b.running || b.closing {
		b.mu.Unlock()
		return errors.New("broker: already started")
	}
	b.running = true
	b.started = time.Now()
	b.mu.Unlock()
	if err := b.load(); err != nil {
		return fmt.Errorf("broker: load state: %w", err)
	}
	b.startLog()
	if b.opts.SysInterval > 0 && b.track() {
		go b.sysLoop()
	}
	return nil
}

// track registers one goroutine with the broker's WaitGroup unless the
// broker is shutting down. Every goroutine the broker starts calls it.
func (b *Broker) track() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.wg.Add(1)
	return true
}

// afterFunc runs fn after d on a tracked goroutine unless the broker shuts
// down first; the returned timer may be stopped with stopTimer.
func (b *Broker) afterFunc(d time.Duration, fn func()) *time.Timer {
	var t *time.Timer
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil
	}
	t = time.AfterFunc(d, func() {
		b.mu.Lock()
		_, live := b.timers[t]
		delete(b.timers, t)
		if !live || b.closing {
			b.mu.Unlock()
			return
		}
		b.wg.Add(1)
		b.mu.Unlock()
		defer b.wg.Done()
		fn()
	})
	b.timers[t] = struct{}{}
	return t
}

// stopTimer cancels a timer made by afterFunc.
func (b *Broker) stopTimer(t *time.Timer) {
	if t == nil {
		return
	}
	t.Stop()
	b.mu.Lock()
	delete(b.timers, t)
	b.mu.Unlock()
}

// Shutdown stops the broker: v5 clients get DISCONNECT 0x8B, connections
// close (publishing their wills), session state is persisted, timers stop,
// and Shutdown waits for every goroutine of the broker or for ctx. It does
// not close a Store passed in Options.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		return nil
	}
	conns := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, c := range conns {
		c.kick(errShutdown)
	}
	// Wait for the connections (their wills route into persistent sessions)
	// before refusing new goroutines.
	if err := b.waitConns(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	b.closing = true
	e := b.engine
	if e != nil {
		e.Stop()
	}
	for t := range b.timers {
		t.Stop()
	}
	clear(b.timers)
	b.mu.Unlock()
	close(b.sysStop)
	if e != nil {
		if err := e.Wait(ctx); err != nil {
			return fmt.Errorf("broker: shutdown: %w", err)
		}
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("broker: shutdown: %w", ctx.Err())
	}
	if err := b.waitSaves(ctx); err != nil {
		return err
	}
	if err := b.store.Sync(); err != nil && !errors.Is(err, store.ErrClosed) {
		b.log.Warn("store sync at shutdown", "err", err)
	}
	if b.ownStore {
		return b.store.Close()
	}
	return nil
}

// waitConns kicks connections until none are left (new ones are refused
// while stopping) or ctx ends.
func (b *Broker) waitConns(ctx context.Context) error {
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		b.mu.Lock()
		n := len(b.conns)
		var rest []*conn
		for c := range b.conns {
			rest = append(rest, c)
		}
		b.mu.Unlock()
		if n == 0 {
			return nil
		}
		for _, c := range rest {
			c.kick(errShutdown)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("broker: shutdown: %w", ctx.Err())
		}
	}
}
