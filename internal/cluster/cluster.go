// Package cluster routes MQTT messages between the nodes of a cluster over
// the fabric (NATS): each node announces the filters of its subscriptions
// (its interest), keeps the other nodes' interest as remote routes in its
// broker, forwards each message once to every node with a matching
// subscription, and holds a QoS 1/2 publisher's acknowledgement until
// those nodes accepted the message (docs/cluster.md).
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/fabric"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/nats-io/nats.go"
)

// Subjects, under the prefix "culex.<cluster>.":
//
//	msg.<node>     messages forwarded to a node
//	ack.<node>     acknowledgement batches for a node's forwarded messages
//	interest       interest changes and heartbeats of every node (JSON)
//	sync.<node>    request: a node's whole interest (JSON)
//	status         request: every node answers with its Status (JSON)
const subjPrefix = "culex."

// ErrRemoteTimeout fails a QoS 1/2 publish that a node with matching
// subscribers did not accept within cluster.ack_timeout.
var ErrRemoteTimeout = fmt.Errorf("%w: a node with matching subscribers did not accept the message in time", packet.ErrUnspecified)

// ErrNodeGone fails a QoS 1/2 publish that waited for a node that went
// silent for cluster.node_timeout: dead or cut off, it did not accept the
// message, and its subscribers may still be alive behind a partition.
var ErrNodeGone = fmt.Errorf("%w: a node with matching subscribers went silent before accepting the message", packet.ErrUnspecified)

// Router is a node's part of cross-node routing.
type Router struct {
	f      *fabric.Fabric
	nc     *nats.Conn
	b      *broker.Broker
	log    *slog.Logger
	node   string
	epoch  uint64
	prefix string
	ackTO  time.Duration
	nodeTO time.Duration

	maxPending int // cluster.max_pending_bytes, per node route

	mu    sync.Mutex
	peers map[string]*peer
	// gone: the peers seen gone (no heartbeat for node_timeout), by name,
	// until the same run is heard again (its interest is restored at
	// once) or another run of the node is; at most one per node.
	gone     map[string]*peer
	local    map[string]byte // announced filters
	localSeq uint64
	subGen   uint64            // counts OnSubscribe calls
	subAt    map[string]uint64 // filter: subGen of its last OnSubscribe not yet seen by a resync
	synced   bool              // the first announcement was made

	acks      chan ackItem
	subs      []*nats.Subscription
	msgSub    *nats.Subscription // of forwarded messages (among subs)
	stop      chan struct{}
	wg        sync.WaitGroup
	closed    atomic.Bool
	dirty     atomic.Bool // a subscription may have gone: resync
	sysBusy   atomic.Bool // a $SYS status is being published
	started   atomic.Bool
	startedAt time.Time

	shMu  sync.RWMutex
	shIdx *topic.Index[string, *shEntry] // other nodes' shared subscriptions: filter, group
	shN   atomic.Int32                   // entries in shIdx, read without shMu (MatchShared)

	watchMu  sync.Mutex
	watchers []func(node string, up bool)

	sh sharedState // sharedtrack.go
	dr drainState  // drain.go

	forwarded atomic.Uint64
	received  atomic.Uint64

	onceSeq atomic.Uint64 // numbers this run's held messages (onceID)

	natsIn     inbound    // batches forwarded through NATS (onMessage's)
	ackScratch []codedAck // onAcks'

	parkMu sync.Mutex
	parked map[string]*parkedNode // held messages of silent nodes

	dedupMu   sync.Mutex
	dedup     map[dedupKey]*dedupState // held messages of other nodes injected here
	dedupRing []dedupKey               // in arrival order; the oldest is forgotten
	dedupNext int

	// Test seams: testResync runs in resync between reading the broker's
	// filters and taking r.mu; testPublish replaces the publish of
	// forwarded batches; testInject runs before a batch is injected.
	testResync  atomic.Pointer[func()]
	testPublish atomic.Pointer[func(node string, batch []byte) error]
	testInject  atomic.Pointer[func()]
	testDial    atomic.Pointer[func() error] // fails a link's dial (link.go)
	// testStallAfter, when set, replaces stallAfter (nanoseconds).
	testStallAfter atomic.Int64

	links *links // link.go; nil: batches go through NATS
}

// peer is another node as this one knows it.
type peer struct {
	name     string
	epoch    uint64
	seq      uint64
	filters  map[string]byte
	lastSeen atomic.Int64
	route    *nodeRoute
	info     announce // its latest heartbeat
	syncing  bool
}

// announce is an interest message: a change (Add, Remove) or a heartbeat
// (neither), or a sync reply (Full).
type announce struct {
	Node    string          `json:"node"`
	Epoch   uint64          `json:"epoch"`
	Seq     uint64          `json:"seq"`
	Add     map[string]byte `json:"add,omitempty"`
	Remove  []string        `json:"remove,omitempty"`
	Full    bool            `json:"full,omitempty"`
	Role    string          `json:"role,omitempty"`
	Started int64           `json:"started,omitempty"`
	Link    string          `json:"link,omitempty"` // where its links listen (link.go)
}

// New makes a node's router. Give it to the broker as a hook
// (broker.Options.Hooks: it announces new subscriptions at once), then
// Start it with the broker.
func New(f *fabric.Fabric, log *slog.Logger) *Router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := f.Config()
	var e [8]byte
	rand.Read(e[:])
	return &Router{
		f: f, nc: f.Conn(), log: log, node: f.NodeName(),
		epoch:  binary.LittleEndian.Uint64(e[:]) | 1,
		prefix: subjPrefix + f.ClusterName() + ".",
		ackTO:  cfg.AckTimeout, nodeTO: cfg.NodeTimeout, maxPending: cfg.MaxPending,
		peers: make(map[string]*peer), gone: make(map[string]*peer), local: make(map[string]byte), subAt: make(map[string]uint64),
		shIdx: topic.NewIndex[string, *shEntry](),
		acks:  make(chan ackItem, 4096), stop: make(chan struct{}),
		parked: make(map[string]*parkedNode), dedup: make(map[dedupKey]*dedupState),
	}
}

// Start subscribes the node to its subjects, announces its interest and
// begins the heartbeats. Call it once the broker has restored its sessions
// and before listeners serve.
func (r *Router) Start(b *broker.Broker) error {
	r.b = b
	if err := r.startLinks(); err != nil { // link.go
		return err
	}
	for subj, h := range map[string]nats.MsgHandler{
		r.prefix + "msg." + r.node:  r.onMessage,
		r.prefix + "ack." + r.node:  r.onAcks,
		r.prefix + "interest":       r.onAnnounce,
		r.prefix + "sync." + r.node: r.onSync,
		r.prefix + "status":         r.onStatus,
	} {
		s, err := r.nc.Subscribe(subj, h)
		if err != nil {
			r.Close()
			return fmt.Errorf("cluster: subscribe %s: %w", subj, err)
		}
		if subj == r.prefix+"msg."+r.node {
			// What other nodes forwarded and this one has not routed yet
			// is bounded as what it holds for them: past it, NATS drops
			// the newest batches (a slow consumer, logged).
			s.SetPendingLimits(1<<20, r.maxPending)
			r.msgSub = s
		} else {
			s.SetPendingLimits(1<<20, 512<<20)
		}
		r.subs = append(r.subs, s)
	}
	if err := r.nc.Flush(); err != nil {
		r.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	if err := r.startShared(); err != nil { // sharedtrack.go
		r.Close()
		return fmt.Errorf("cluster: %w", err)
	}
	r.startedAt = time.Now()
	r.started.Store(true)
	r.wg.Add(2)
	go r.ackLoop()
	go r.tickLoop()
	r.resync()
	return nil
}

// Watch calls fn whenever another node joins (up, also after a restart)
// or is gone (no heartbeat for cluster.node_timeout), on a goroutine of the
// router: fn must not block. The client-id registry and wills use it to
// release what a dead node held.
func (r *Router) Watch(fn func(node string, up bool)) {
	r.watchMu.Lock()
	r.watchers = append(r.watchers, fn)
	r.watchMu.Unlock()
}

func (r *Router) notify(node string, up bool) {
	r.watchMu.Lock()
	ws := r.watchers
	r.watchMu.Unlock()
	for _, fn := range ws {
		fn(node, up)
	}
}

// goneKept is how long the interest of a node seen gone is kept for its
// return (Router.gone).
const goneKept = time.Hour

// heartbeatEvery is the heartbeat period: a fifth of node_timeout.
func (r *Router) heartbeatEvery() time.Duration { return max(r.nodeTO/5, 20*time.Millisecond) }

// Done is closed when the router is closed.
func (r *Router) Done() <-chan struct{} { return r.stop }

// WaitReady polls Ready until it succeeds or ctx ends, logging what it
// waits for every logEvery and "cluster joined" once.
func (r *Router) WaitReady(ctx context.Context, logEvery time.Duration) error {
	if err := r.f.WaitReady(ctx, logEvery); err != nil {
		return err
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		err := r.Synced()
		if err == nil {
			r.log.Info("cluster subscriptions synced", "node", r.node, "nodes", r.Nodes())
			return nil
		}
		if time.Since(last) >= logEvery {
			r.log.Warn("waiting for the cluster", "node", r.node, "reason", err.Error())
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return err
		case <-t.C:
		}
	}
}

// OnSubscribe announces a new filter at once (the broker calls it as a
// SubscribeHook, before the SUBACK), so the other nodes route to it as
// soon as the announcement reaches them.
func (r *Router) OnSubscribe(_ *broker.ClientInfo, filter string, qos byte) {
	if !r.started.Load() {
		return // Start announces everything
	}
	r.mu.Lock()
	r.subGen++
	r.subAt[filter] = r.subGen // a resync whose walk began earlier keeps it
	if q, ok := r.local[filter]; ok && q >= qos {
		r.mu.Unlock()
		return
	}
	r.local[filter] = qos
	r.localSeq++
	a := announce{Node: r.node, Epoch: r.epoch, Seq: r.localSeq, Add: map[string]byte{filter: qos}}
	r.publishLocked(a)
	r.mu.Unlock()
}

// OnUnsubscribe, OnDisconnect and OnSessionExpired mark the announced
// filters stale: a filter may have lost its last subscriber, which the
// next resynchronisation (within a second) announces.
func (r *Router) OnUnsubscribe(*broker.ClientInfo, string) { r.dirty.Store(true) }
func (r *Router) OnDisconnect(*broker.ClientInfo, error)   { r.dirty.Store(true) }
func (r *Router) OnSessionExpired(string)                  { r.dirty.Store(true) }

// publishLocked sends an announcement; r.mu is held so that changes leave
// in sequence order.
func (r *Router) publishLocked(a announce) {
	if r.links != nil {
		a.Link = r.links.addr
	}
	data, _ := json.Marshal(a)
	if err := r.nc.Publish(r.prefix+"interest", data); err != nil && !r.closed.Load() {
		r.log.Warn("cluster: interest announcement failed", "err", err)
	}
}

// resync compares the broker's filters with the announced ones and
// announces the difference: removals, and anything a hook did not see
// (sessions restored at start). A filter subscribed after the walk of the
// broker's filters began (OnSubscribe is called after the broker indexed
// the subscription) may be missing from the walk: it stays announced, and
// the next resync checks it again.
func (r *Router) resync() {
	r.mu.Lock()
	gen := r.subGen
	r.mu.Unlock()
	cur := make(map[string]byte)
	r.b.LocalFilters(func(f string, q byte) { cur[f] = q })
	if fn := r.testResync.Swap(nil); fn != nil {
		(*fn)()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for f, g := range r.subAt {
		if g <= gen {
			delete(r.subAt, f) // the walk saw it
		} else if q, ok := r.local[f]; ok {
			if c, seen := cur[f]; !seen || q > c {
				cur[f] = q
				r.dirty.Store(true)
			}
		}
	}
	a := announce{Node: r.node, Epoch: r.epoch}
	for f, q := range cur {
		if old, ok := r.local[f]; !ok || old != q {
			if a.Add == nil {
				a.Add = make(map[string]byte)
			}
			a.Add[f] = q
		}
	}
	for f := range r.local {
		if _, ok := cur[f]; !ok {
			a.Remove = append(a.Remove, f)
		}
	}
	if a.Add == nil && a.Remove == nil && r.synced {
		return
	}
	r.local = cur
	r.localSeq++
	a.Seq = r.localSeq
	r.synced = true
	r.publishLocked(a)
}

// heartbeat tells every node this one is alive and which interest
// sequence it is at.
func (r *Router) heartbeat() {
	r.mu.Lock()
	a := announce{Node: r.node, Epoch: r.epoch, Seq: r.localSeq, Role: string(r.f.Role()), Started: r.f.Started().UnixMilli()}
	r.publishLocked(a)
	r.mu.Unlock()
}

func (r *Router) tickLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.heartbeatEvery())
	defer t.Stop()
	lastResync, lastSys := time.Now(), time.Time{}
	r.heartbeat()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		r.heartbeat()
		// Walking every subscription costs, so only after a removal (or
		// every 30 s, in case a removal went unseen).
		if since := time.Since(lastResync); since >= time.Second && r.dirty.Load() || since >= 30*time.Second {
			r.dirty.Store(false)
			r.resync()
			lastResync = time.Now()
		}
		r.expire()
		if time.Since(lastSys) >= SysInterval && r.sysBusy.CompareAndSwap(false, true) {
			// Status asks JetStream, which may be slow: not on the
			// heartbeat's goroutine.
			lastSys = time.Now()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer r.sysBusy.Store(false)
				r.publishSys()
			}()
		}
	}
}

// SysInterval is how often a node publishes $SYS/brokers/<node>/status.
var SysInterval = 10 * time.Second

// publishSys publishes the node's Status as JSON on
// $SYS/brokers/<node>/status, retained on this node and forwarded to the
// subscribers of every node.
func (r *Router) publishSys() {
	data, _ := json.Marshal(r.Status())
	r.b.Publish(context.Background(), &broker.Message{Topic: "$SYS/brokers/" + r.node + "/status", Payload: data, Retain: true}, nil)
}

// expire forgets nodes silent for longer than node_timeout and fails
// acknowledgements older than ack_timeout.
func (r *Router) expire() {
	now := time.Now()
	var gone []*peer
	r.mu.Lock()
	for name, p := range r.peers {
		if now.Sub(time.Unix(0, p.lastSeen.Load())) > r.nodeTO {
			delete(r.peers, name)
			r.gone[name] = p
			gone = append(gone, p)
		}
	}
	for name, g := range r.gone {
		if now.Sub(time.Unix(0, g.lastSeen.Load())) > goneKept {
			delete(r.gone, name) // removed from the cluster, most likely
		}
	}
	routes := make([]*nodeRoute, 0, len(r.peers))
	for _, p := range r.peers {
		routes = append(routes, p.route)
	}
	r.mu.Unlock()
	for _, p := range gone {
		r.log.Warn("cluster: node gone", "node", p.name, "silent_for", r.nodeTO)
		r.dropPeer(p, ErrNodeGone)
		r.notify(p.name, false)
	}
	for _, rt := range routes {
		rt.timeout(now.UnixNano(), now.Add(-r.ackTO).UnixNano())
	}
	r.expireParked(now.UnixNano())
}

// unsubscribe removes one of a node's filters, plain or shared.
func (r *Router) unsubscribe(rt *nodeRoute, f string) {
	if group, inner, ok, _ := topic.ParseShared(f); ok {
		r.shRemove(rt, group, inner)
		return
	}
	r.b.UnsubscribeRemote(f, rt)
}

// dropPeer removes a node's remote routes and stops waiting for it: the
// waits end with err, nil when the node is known dead (a new run of it
// was heard: its clean sessions ended with the old one).
func (r *Router) dropPeer(p *peer, err error) {
	for f := range p.filters {
		r.unsubscribe(p.route, f)
	}
	p.route.release(err)
}

func (r *Router) onAnnounce(msg *nats.Msg) {
	var a announce
	if err := json.Unmarshal(msg.Data, &a); err != nil || a.Node == r.node || a.Node == "" {
		return
	}
	r.mu.Lock()
	p := r.peers[a.Node]
	var old *peer
	if p != nil && p.epoch != a.Epoch {
		// The node restarted: what waited for its previous run is released.
		old, p = p, nil
		delete(r.peers, a.Node)
	}
	joined := p == nil
	if p == nil {
		p = &peer{name: a.Node, epoch: a.Epoch, filters: make(map[string]byte)}
		p.route = newNodeRoute(r, a.Node, a.Epoch)
		if a.Link != "" && r.links != nil {
			p.route.link = &routeLink{addr: a.Link}
		}
		r.peers[a.Node] = p
		r.log.Info("cluster: node joined", "node", a.Node)
		if g := r.gone[a.Node]; g != nil {
			delete(r.gone, a.Node)
			if g.epoch == a.Epoch {
				// The run seen gone is back (it was frozen or cut off):
				// its interest is what it was, less what it announced
				// meanwhile, which the sequence check below syncs. Routed
				// to at once, not only once a sync answers: what is
				// published meanwhile (the commands held for it, those
				// behind them) would reach nobody there.
				r.applyLocked(p, g.filters, nil)
				p.seq = g.seq
			}
		}
	}
	p.lastSeen.Store(time.Now().UnixNano())
	if a.Role != "" {
		p.info = a
	}
	var needSync bool
	switch {
	case a.Seq <= p.seq:
	case a.Seq == p.seq+1 && (a.Add != nil || a.Remove != nil):
		p.seq = a.Seq
		r.applyLocked(p, a.Add, a.Remove)
	default:
		needSync = !p.syncing // a change was missed, or a new node
		p.syncing = true
	}
	r.mu.Unlock()
	if old != nil {
		r.log.Info("cluster: node restarted", "node", a.Node)
		r.dropPeer(old, nil)
		r.notify(a.Node, false)
	}
	if joined {
		r.unpark(p)
		r.notify(a.Node, true)
	}
	if needSync {
		go r.requestSync(a.Node, a.Epoch)
	}
}

// applyLocked applies interest changes to p's remote routes.
func (r *Router) applyLocked(p *peer, add map[string]byte, remove []string) {
	for f, q := range add {
		if group, inner, ok, _ := topic.ParseShared(f); ok {
			r.shAdd(p.route, group, inner)
			p.filters[f] = q
			continue
		}
		if err := r.b.SubscribeRemote(f, q, p.route); err != nil {
			r.log.Warn("cluster: remote filter refused", "node", p.name, "filter", f, "err", err)
			continue
		}
		p.filters[f] = q
	}
	for _, f := range remove {
		if _, ok := p.filters[f]; ok {
			delete(p.filters, f)
			r.unsubscribe(p.route, f)
		}
	}
}

// requestSync fetches a node's whole interest and replaces what this node
// knew of it.
func (r *Router) requestSync(node string, epoch uint64) {
	for attempt := 0; attempt < 5 && !r.closed.Load(); attempt++ {
		resp, err := r.nc.Request(r.prefix+"sync."+node, nil, max(r.nodeTO/2, time.Second))
		if err != nil {
			continue
		}
		var a announce
		if json.Unmarshal(resp.Data, &a) != nil {
			continue
		}
		r.mu.Lock()
		p := r.peers[node]
		if p == nil || p.epoch != a.Epoch || a.Seq < p.seq {
			if p != nil && p.epoch == epoch {
				p.syncing = false
			}
			r.mu.Unlock()
			return // gone, restarted or moved on meanwhile: its next heartbeat starts over
		}
		var remove []string
		for f := range p.filters {
			if _, ok := a.Add[f]; !ok {
				remove = append(remove, f)
			}
		}
		r.applyLocked(p, a.Add, remove)
		p.seq, p.syncing = a.Seq, false
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	if p := r.peers[node]; p != nil && p.epoch == epoch {
		p.syncing = false // the next heartbeat tries again
	}
	r.mu.Unlock()
}

func (r *Router) onSync(msg *nats.Msg) {
	r.mu.Lock()
	a := announce{Node: r.node, Epoch: r.epoch, Seq: r.localSeq, Full: true, Add: make(map[string]byte, len(r.local))}
	for f, q := range r.local {
		a.Add[f] = q
	}
	r.mu.Unlock()
	data, _ := json.Marshal(a)
	msg.Respond(data)
}

// Synced reports whether every node this one has heard of has sent its
// whole interest.
func (r *Router) Synced() error {
	if wait := time.Until(r.startedAt.Add(2 * r.heartbeatEvery())); wait > 0 {
		// Every live node heartbeats within one interval: after two, this
		// node has heard of each of them.
		return fmt.Errorf("cluster: listening for the other nodes' heartbeats (%v more)", wait.Round(time.Millisecond))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var waiting []string
	for name, p := range r.peers {
		if p.syncing || p.seq == 0 {
			waiting = append(waiting, name)
		}
	}
	if len(waiting) > 0 {
		sort.Strings(waiting)
		return fmt.Errorf("cluster: waiting for the subscriptions of %v", waiting)
	}
	return nil
}

// Ready is the node's cluster readiness: the fabric has joined and the
// other nodes' subscriptions are known.
func (r *Router) Ready(ctx context.Context) error {
	if !r.started.Load() || r.closed.Load() {
		return errors.New("cluster: routing not started")
	}
	if r.Draining() {
		return ErrDraining // drain.go
	}
	if err := r.f.Ready(ctx); err != nil {
		return err
	}
	return r.Synced()
}

// Nodes returns the names of the other nodes this one routes to.
func (r *Router) Nodes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.peers))
	for n := range r.peers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// onMessage injects a forwarded message into the local broker, and
// acknowledges a QoS 1/2 one once the broker has queued it (durably for
// persistent sessions).
func (r *Router) onMessage(msg *nats.Msg) { r.injectBatch(msg.Data, &r.natsIn) }

// inbound is where forwarded batches come from: the NATS subscription, or
// one link (whose acknowledgements go back on it). Only its goroutine
// uses it.
type inbound struct {
	lk         *linkAcks // nil: NATS
	lastSender string    // inject's: the sender of the last forwarded message
}

// injectBatch injects a batch of forwarded messages that came from src
// and sends their acknowledgements (through NATS, or queued on src's
// link for its next flush).
func (r *Router) injectBatch(data []byte, src *inbound) {
	bt := r.b.Batch(time.Now().UnixNano())
	ab := r.injectIn(bt, data, src)
	bt.EndHere() // before the acknowledgements: they say the copies are queued
	r.sendAcks(ab)
}

// injectIn injects a batch in bt and returns its acknowledgements, for the
// caller to send (sendAcks) once bt has ended.
func (r *Router) injectIn(bt *broker.Batch, data []byte, src *inbound) *ackBatch {
	if fn := r.testInject.Load(); fn != nil {
		(*fn)()
	}
	now := time.Now().UnixNano()
	ab := &ackBatch{r: r, open: true, lk: src.lk}
	for b := data; len(b) > 0; {
		if len(b) < 4 || uint64(len(b)-4) < uint64(binary.LittleEndian.Uint32(b)) {
			r.log.Warn("cluster: malformed batch dropped")
			return ab
		}
		l := 4 + int(binary.LittleEndian.Uint32(b))
		r.inject(b[4:l], now, bt, ab, src)
		b = b[l:]
	}
	return ab
}

// injected is a forwarded QoS 1/2 message routed here with what its
// acknowledgement needs: one allocation for both, and the Acker the
// broker completes (no closure per message). A QoS 0 one is a
// broker.Message alone (64 B less).
type injected struct {
	m   broker.Message
	w   broker.Wait
	ab  *ackBatch
	to  string // the sender
	seq uint64
}

func (in *injected) Done(err error) { in.ab.ack(in.to, in.seq, errCode(err)) }

// inject routes one forwarded message in bt; only src's goroutine calls it.
func (r *Router) inject(frame []byte, now int64, bt *broker.Batch, ab *ackBatch, src *inbound) {
	var dm broker.Message
	// A copy of its own: a queued message must not pin the batch.
	seq, sender, once, err := decodeMsgTo(&dm, bytes.Clone(frame), now)
	if err != nil {
		r.log.Warn("cluster: malformed message dropped", "err", err)
		return
	}
	// The sender's name is kept (acknowledgements, held messages): one
	// string of it rather than the frame it aliases.
	if sender != src.lastSender {
		src.lastSender = strings.Clone(sender)
	}
	sender = src.lastSender
	r.received.Add(1)
	if seq == 0 || once.id != 0 {
		// QoS 0 (nothing to acknowledge) or held (injectOnce waits and
		// acknowledges): the message alone.
		m := new(broker.Message)
		*m = dm
		if seq == 0 {
			bt.PublishAck(context.Background(), m, nil, nil)
		} else {
			r.injectOnce(m, seq, sender, once)
		}
		return
	}
	in := &injected{m: dm, ab: ab, to: sender, seq: seq}
	bt.PublishAck(context.Background(), &in.m, &in.w, in)
}

// ackBatch gathers the acknowledgements of one batch of forwarded
// messages that complete while injectBatch injects it (clean sessions: at
// once), to send them in one message when it is done (on the batch's
// link, or through NATS), without the ack loop; later ones (persistent
// sessions, written first) go through the ack loop and NATS.
type ackBatch struct {
	r    *Router
	mu   sync.Mutex
	open bool
	to   string
	buf  []byte
	lk   *linkAcks // the link the batch came on (nil: NATS)
}

func (ab *ackBatch) ack(to string, seq uint64, code byte) {
	ab.mu.Lock()
	if ab.open && (ab.buf == nil || ab.to == to) {
		if ab.buf == nil {
			ab.to, ab.buf = to, appendString(make([]byte, 0, 256), ab.r.node)
		}
		ab.buf = appendAck(ab.buf, seq, code)
		ab.mu.Unlock()
		return
	}
	ab.mu.Unlock()
	ab.r.ack(to, seq, code)
}

// sendAcks closes ab and sends what it gathered. The queued messages of
// the batch keep ab (their acknowledgement's), not its buffer.
func (r *Router) sendAcks(ab *ackBatch) {
	ab.mu.Lock()
	ab.open = false
	to, b := ab.to, ab.buf
	ab.buf = nil
	ab.mu.Unlock()
	if b != nil {
		if ab.lk != nil {
			ab.lk.add(b) // the link's reader sends it (link.go)
			return
		}
		r.nc.Publish(r.prefix+"ack."+to, b)
	}
}

// errCode is the reason code an acknowledgement carries for err.
func errCode(err error) byte {
	if err == nil {
		return 0
	}
	var c packet.Code
	if errors.As(err, &c) {
		return c.Value
	}
	return packet.ErrUnspecified.Value
}

// ack queues an acknowledgement for the ack loop.
func (r *Router) ack(to string, seq uint64, code byte) {
	select {
	case r.acks <- ackItem{to: to, seq: seq, code: code}:
	case <-r.stop: // closed: the sender stops waiting when it sees this node gone
	}
}

type ackItem struct {
	to   string
	seq  uint64
	code byte
}

// ackLoop sends acknowledgements in batches: one NATS message per sender
// for whatever accumulated while the previous batch was sent.
func (r *Router) ackLoop() {
	defer r.wg.Done()
	batches := make(map[string][]byte)
	for {
		var it ackItem
		select {
		case <-r.stop:
			return
		case it = <-r.acks:
		}
		for n := 0; ; n++ {
			b := batches[it.to]
			if b == nil {
				b = appendString(make([]byte, 0, 256), r.node)
			}
			batches[it.to] = appendAck(b, it.seq, it.code)
			if n >= 1024 {
				break
			}
			select {
			case it = <-r.acks:
				continue
			default:
			}
			break
		}
		for to, b := range batches {
			r.nc.Publish(r.prefix+"ack."+to, b)
			delete(batches, to)
		}
	}
}

// onAcks completes the waits an acknowledgement batch names. Only the
// subscription's goroutine calls it (r.ackScratch).
func (r *Router) onAcks(msg *nats.Msg) {
	rd := &reader{b: msg.Data}
	from := rd.string()
	if rd.err != nil {
		return
	}
	r.mu.Lock()
	p := r.peers[from]
	r.mu.Unlock()
	if p == nil {
		return
	}
	r.ackScratch = p.route.ackedBatch(rd.b, r.ackScratch)
}

// Close stops routing: remote routes are removed, waiting publishes are
// released, the subscriptions end. The fabric stays open.
func (r *Router) Close() {
	if !r.closed.CompareAndSwap(false, true) {
		return
	}
	for _, s := range r.subs {
		s.Unsubscribe()
	}
	if r.links != nil {
		r.links.close()
	}
	close(r.stop)
	if !r.started.Load() {
		return
	}
	r.wg.Wait()
	r.mu.Lock()
	peers := r.peers
	r.peers, r.gone = map[string]*peer{}, map[string]*peer{}
	r.mu.Unlock()
	for _, p := range peers {
		r.dropPeer(p, ErrRemoteTimeout)
	}
	r.expireParked(0)
	r.closeShared() // sharedtrack.go
}
