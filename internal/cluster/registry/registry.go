// Package registry is the cluster's shared state of sessions on NATS
// JetStream: which node holds each client id (one live session per client
// id, cluster-wide), the wills of every node's clients (published once,
// by a survivor when their node dies), node liveness, and the retained
// messages every node serves. It implements broker.Registry and
// broker.RetainedReplica; docs/cluster.md describes the behaviour.
package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures a Registry.
type Config struct {
	// Conn is the node's connection to the NATS fabric.
	Conn *nats.Conn
	// Node is this node's name, unique in the cluster.
	Node string
	// Prefix names the buckets (<prefix>_ids, _wills, _retained) and
	// subjects (<prefix>.takeover.*, <prefix>.alive); default "culex".
	Prefix string
	// Replicas of each bucket: the number of core nodes, at most 5;
	// default 1.
	Replicas int
	// Heartbeat is how often the node says it is alive; default 1 s.
	Heartbeat time.Duration
	// DeadAfter is how long a node unheard of counts as dead: its client
	// ids are free and a survivor publishes its clients' wills; default
	// 3 Heartbeats.
	DeadAfter time.Duration
	// Timeout bounds each request to JetStream or to another node that a
	// caller waits for; default 5 s (a takeover's request to the node
	// that held the id: 2 s at most).
	Timeout time.Duration
	// StuckAfter is how long a key's compare-and-sets may be refused
	// with error 10164 while the key is unchanged before the node asks
	// the leader of the bucket's stream to step down (CASGuard); default
	// DefaultStuckAfter.
	StuckAfter time.Duration
	Logger     *slog.Logger
}

// Node is what the Registry calls on its node's broker (*broker.Broker).
type Node interface {
	Supersede(clientID string, token uint64, clean bool) bool
	SupersedeBefore(clientID string, rev uint64, clean bool)
	FireWill(data []byte) error
	ApplyRetained(m *broker.Message)
	PruneRetained(keep func(topic string) bool)
}

// Registry is one node's view of the cluster's session state.
type Registry struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	inc    string // this incarnation of the node: a restart is another node
	ids    jetstream.KeyValue
	wills  jetstream.KeyValue
	ret    jetstream.KeyValue
	retPre string // subject prefix of the retained bucket's keys
	log    *slog.Logger
	b      Node

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	watchAt  time.Time            // when the heartbeats' subscription started
	seen     map[string]nodeSeen  // node name -> its incarnation last heard of
	deadIncs map[string]time.Time // node+"."+incarnation of the dead, for their wills
	hashed   map[string]string    // retained key -> topic, for keys that are digests
	longIDs  map[string]string    // client id key -> client id, for digests this node claimed
	fires    map[string]*time.Timer
	closed   bool
	ready    atomic.Bool                 // Start finished: the buckets are set
	onKick   atomic.Pointer[func() bool] // tests: runs when a takeover request arrives; true drops it
	onElect  func(bool)                  // tests: runs after each will election, with its outcome
	// beforeElect (tests) runs between reading a will and the
	// compare-and-set that elects this node.
	beforeElect func()
	// keepDeadWill (tests) makes a client back from a dead node leave its
	// will: as when its delete lands before a survivor's election write.
	keepDeadWill atomic.Bool
	// beforeKick (tests) runs between a claim's compare-and-set and its
	// takeover request.
	beforeKick func()
	kicking    map[string]int // client id key -> claims of this node waiting for a takeover answer

	retQ retQueue
	// willCh: will key -> the chain of this node's operations on it.
	willCh  map[string]*willChain
	willSeq atomic.Uint64
	// willFault (tests) runs before each write of this node's clients'
	// wills: it may wait (a slow JetStream) or fail it.
	willFault atomic.Pointer[func() error]
	// retFault (tests) runs before each retained write is published: it
	// may wait (a slow JetStream) or fail it.
	retFault atomic.Pointer[func() error]
	// casFault (tests) runs before each compare-and-set of a will's
	// election: an error fails it as if JetStream had refused it.
	casFault atomic.Pointer[func(key string) error]

	// guard watches the compare-and-sets refused with 10164.
	guard *CASGuard
}

type nodeSeen struct {
	inc  string
	at   time.Time
	dead bool
}

// idRecord is the value of a client id's key.
type idRecord struct {
	Node  string `json:"n"`
	Inc   string `json:"i"`
	Owner string `json:"o,omitempty"`
	// Clean is the claiming CONNECT's clean start, for a node that learns
	// of the claim from the bucket rather than from a takeover request.
	Clean bool `json:"k,omitempty"`
}

// willRecord is the value of a will's key: <node>.<incarnation>.<client id>.
type willRecord struct {
	ClientID string        `json:"c"`
	Delay    time.Duration `json:"d"`
	Deadline int64         `json:"t,omitempty"`
	Data     []byte        `json:"x"`
	// Firer is the survivor elected to publish the will of a dead node's
	// client, and its incarnation.
	Firer    string `json:"f,omitempty"`
	FirerInc string `json:"fi,omitempty"`
}

// kick asks a node to end the session it held under Token.
type kick struct {
	ClientID string `json:"c"`
	Token    uint64 `json:"t"`
	Clean    bool   `json:"k,omitempty"`
}

// New makes the Registry of a node; Start connects it to the cluster.
func New(cfg Config) (*Registry, error) {
	if cfg.Conn == nil || cfg.Node == "" {
		return nil, errors.New("registry: a NATS connection and a node name are required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "culex"
	}
	cfg.Replicas = max(cfg.Replicas, 1)
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 3 * cfg.Heartbeat
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	r := &Registry{cfg: cfg, nc: cfg.Conn, log: cfg.Logger, seen: map[string]nodeSeen{},
		deadIncs: map[string]time.Time{}, hashed: map[string]string{}, longIDs: map[string]string{}, kicking: map[string]int{},
		willCh: map[string]*willChain{},
		fires:  map[string]*time.Timer{}}
	if r.log == nil {
		r.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var inc [8]byte
	rand.Read(inc[:])
	r.inc = hex.EncodeToString(inc[:])
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, err
	}
	r.js = js
	r.retQ.wake = make(chan struct{}, 1)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.guard = NewCASGuard(cfg.Conn, r.log, cfg.StuckAfter)
	return r, nil
}

// bucket makes or opens a bucket, retrying while JetStream elects its
// leaders.
func (r *Registry) bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := r.js.CreateOrUpdateKeyValue(c, cfg)
		cancel()
		if err == nil || replicasNotSupported(err) {
			return kv, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Start attaches the broker, makes or opens the buckets (waiting while
// JetStream elects its leaders), and starts the node's heartbeat, the
// watches of nodes and retained messages, and the takeover requests'
// subscription. It returns once the retained messages are loaded
// (readiness: Ready), or with ctx's error.
func (r *Registry) Start(ctx context.Context, b Node) error {
	r.b = b
	buckets := []struct {
		kv  *jetstream.KeyValue
		cfg jetstream.KeyValueConfig
	}{
		{&r.ids, jetstream.KeyValueConfig{Bucket: r.cfg.Prefix + "_ids"}},
		{&r.wills, jetstream.KeyValueConfig{Bucket: r.cfg.Prefix + "_wills"}},
		{&r.ret, jetstream.KeyValueConfig{Bucket: r.cfg.Prefix + "_retained"}},
	}
	for _, bk := range buckets {
		bk.cfg.Replicas = r.cfg.Replicas
		bk.cfg.Storage = jetstream.FileStorage
		kv, err := r.bucket(ctx, bk.cfg)
		if replicasNotSupported(err) {
			// One core (JetStream not clustered): one replica is all there is.
			r.log.Warn("cluster: JetStream is not clustered: the cluster's state has one replica", "bucket", bk.cfg.Bucket)
			r.cfg.Replicas, bk.cfg.Replicas = 1, 1
			kv, err = r.bucket(ctx, bk.cfg)
		}
		if err != nil {
			return fmt.Errorf("registry: bucket %s: %w", bk.cfg.Bucket, err)
		}
		*bk.kv = kv
	}
	r.retPre = "$KV." + r.cfg.Prefix + "_retained."
	kicks, err := r.nc.Subscribe(r.kickSubject(r.cfg.Node, r.inc), r.onKickMsg)
	if err != nil {
		return err
	}
	// Heartbeats travel on plain NATS, not JetStream: a stream's leader
	// election (a core lost) must not make live nodes look dead.
	alive, err := r.nc.Subscribe(r.cfg.Prefix+".alive", r.onAlive)
	if err != nil {
		kicks.Unsubscribe()
		return err
	}
	r.mu.Lock()
	r.watchAt = time.Now()
	r.mu.Unlock()
	r.sayAlive()
	// The watch lasts as long as the Registry, not as Start's ctx.
	rw, err := WatchAll(ctx, r.ctx, r.ret)
	if err != nil {
		return err
	}
	iw, err := WatchAll(ctx, r.ctx, r.ids, jetstream.UpdatesOnly())
	if err != nil {
		rw.Stop()
		return err
	}
	loaded := make(chan struct{})
	r.goWatch(func() { r.watchRetained(rw, loaded) })
	r.goWatch(r.writeRetained)
	r.goWatch(func() { Follow(r.ctx, iw, r.onIDChange) })
	r.goWatch(func() { r.heartbeat(); kicks.Unsubscribe(); alive.Unsubscribe() })
	select {
	case <-loaded:
		r.ready.Store(true)
		r.log.Info("cluster: session registry ready", "node", r.cfg.Node, "replicas", r.cfg.Replicas)
		r.async(func(context.Context) { r.previousRuns() })
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errNotReady refuses a claim before Start has connected the Registry.
var errNotReady = errors.New("registry: not connected to the cluster yet")

// Ready says whether the Registry is connected to the cluster and has
// loaded its retained messages: until then CONNECTs are refused (0x88).
func (r *Registry) Ready() error {
	if !r.ready.Load() {
		return errNotReady
	}
	return nil
}

// WatchAll starts a watch of kv that lives as long as stop, trying again
// every 250 ms until it starts or ctx ends: while the cores elect a meta
// leader (a rolling restart, a lost core) no watch can be made, and a node
// that gave up at the first failure would never become ready.
func WatchAll(ctx, stop context.Context, kv jetstream.KeyValue, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	for {
		w, err := kv.WatchAll(stop, opts...)
		if err == nil {
			return w, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("watch %s: %w (last: %v)", kv.Bucket(), ctx.Err(), err)
		case <-stop.Done():
			return nil, stop.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Follow hands each update of w, a watch WatchAll tied to stop, to fn
// (nil: the initial values are all delivered) until stop ends or the
// watch does. It does not stop w: stop's end does, on nats.go's own
// goroutine, whose request to delete the watch's consumer waits out the
// JetStream API timeout (5 s) when no meta leader answers, as when the
// whole cluster stops at once. Nothing waits for it: the server removes
// an abandoned watch's consumer itself.
func Follow(stop context.Context, w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) {
	for {
		select {
		case <-stop.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			fn(e)
		}
	}
}

func (r *Registry) goWatch(fn func()) {
	r.wg.Add(1)
	go func() { defer r.wg.Done(); fn() }()
}

// Close stops the heartbeat and the watches; the node's ids and wills stay
// until its claims are released or it is seen dead.
func (r *Registry) Close() {
	r.cancel()
	r.mu.Lock()
	r.closed = true
	for k, t := range r.fires {
		t.Stop()
		delete(r.fires, k)
	}
	r.mu.Unlock()
	r.wg.Wait()
	r.guard.Close()
}

func (r *Registry) kickSubject(node, inc string) string {
	return r.cfg.Prefix + ".takeover." + enc(node) + "." + inc
}

// enc makes a string a KV key or subject token: base64url, or a digest
// ("=" and hex SHA-256) for long ones, so that keys stay small.
func enc(s string) string {
	e := base64.RawURLEncoding.EncodeToString([]byte(s))
	if len(e) <= 256 {
		return e
	}
	sum := sha256.Sum256([]byte(s))
	return "=" + hex.EncodeToString(sum[:])
}

// Key is the KV key and subject token of a client id (or topic) in the
// cluster's buckets and subjects: base64url, or "=" and the hex SHA-256 of
// a long one. Other packages keying by client id (psession) use it too.
func Key(s string) string { return enc(s) }

// opCtx bounds one operation a caller waits for.
func (r *Registry) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, r.cfg.Timeout)
}

// Claim implements broker.Registry: compare-and-set on the client id's
// key (on its absence, or on the revision read at the leader), then a
// takeover request to the node whose claim it replaced.
func (r *Registry) Claim(ctx context.Context, c *broker.Claim) error {
	if !r.ready.Load() {
		return errNotReady
	}
	key := enc(c.ClientID)
	if key[0] == '=' {
		// Before the claim: the bucket's watch may show a later one first.
		r.mu.Lock()
		r.longIDs[key] = c.ClientID
		r.mu.Unlock()
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	if c.Clean {
		// A clean start's id is mostly new or released (which leaves no
		// record): claim it as absent at once; read it only when it is
		// not. A persistent session's id mostly has a record: read first.
		if done, err := r.create(ctx, key, c); done || err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !backoff(ctx, attempt) {
			return fmt.Errorf("registry: client id claim kept changing: %w", ctx.Err())
		}
		rev, val, err := r.readID(ctx, key)
		if err != nil {
			return err
		}
		if rev == 0 {
			if done, err := r.create(ctx, key, c); done || err != nil {
				return err
			}
			continue // claimed meanwhile: read it
		}
		var prev idRecord
		if val != nil && json.Unmarshal(val, &prev) != nil {
			prev = idRecord{} // unreadable: free
		}
		other := prev.Node != "" && (prev.Node != r.cfg.Node || prev.Inc != r.inc)
		live := other && r.alive(prev.Node, prev.Inc)
		owner := c.Owner
		// The ownership rules apply whether or not the node that held the
		// id lives: a session outlives its node's silence (a partition, a
		// restart), and an intruder that took the id then would own it.
		// Liveness only decides whether that node is asked to end it. A
		// record of this node's own run was checked against its sessions.
		if other && prev.Owner != "" {
			if owner, err = c.Decide(prev.Owner); err != nil {
				return err
			}
		}
		v, _ := json.Marshal(idRecord{Node: r.cfg.Node, Inc: r.inc, Owner: owner, Clean: c.Clean})
		next, err := r.ids.Update(ctx, key, v, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			r.refused(r.ids, key, rev, err)
			continue
		}
		if err != nil {
			return err
		}
		r.guard.Done(r.ids.Bucket(), key)
		c.Token, c.Owner = next, owner
		if prev.Node != "" {
			c.Prev = broker.ClaimHolder{Node: prev.Node, Inc: prev.Inc, Token: rev, Here: !other}
		}
		switch {
		case live:
			r.supersede(ctx, key, prev, c.ClientID, rev, c.Clean)
		case other:
			r.log.Info("cluster: client id taken from a node seen dead", "client_id", c.ClientID, "node", prev.Node)
			if !c.Clean {
				// The client came back within its will's delay, which
				// cancels it [MQTT-3.1.3-9]. Most clients have none: read
				// first (at the leader; a dead node writes no new will),
				// so that a reconnect storm after a node died does not
				// make a replicated write for each.
				wk := willKey(prev.Node, prev.Inc, c.ClientID)
				if _, w, err := ReadLast(ctx, r.nc, r.cfg.Prefix+"_wills", wk); (err != nil || w != nil) && !r.keepDeadWill.Load() {
					_ = r.purge(ctx, r.wills, wk, 0)
				}
			}
		}
		return nil
	}
}

// create claims key for c when the key has no record at all (a
// compare-and-set on its subject's last revision 0): false when it has
// one.
func (r *Registry) create(ctx context.Context, key string, c *broker.Claim) (bool, error) {
	v, _ := json.Marshal(idRecord{Node: r.cfg.Node, Inc: r.inc, Owner: c.Owner, Clean: c.Clean})
	rev, err := r.ids.Update(ctx, key, v, 0)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		r.refused(r.ids, key, 0, err)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.guard.Done(r.ids.Bucket(), key)
	c.Token = rev
	return true, nil
}

// refused tells the guard of a compare-and-set of key in kv at rev that
// JetStream refused with err, when that was error 10164.
func (r *Registry) refused(kv jetstream.KeyValue, key string, rev uint64, err error) {
	if InFlight(err) {
		r.guard.Refused(kv.Bucket(), key, rev)
	}
}

// backoff waits a little longer at each attempt of a compare-and-set that
// lost (1 ms, 2 ms... up to 20 ms): JetStream refuses one while another
// write of the key is in flight. False when ctx ends first.
func backoff(ctx context.Context, attempt int) bool {
	return Wait(ctx, time.Duration(min(attempt, 20))*time.Millisecond)
}

// Wait waits d, false when ctx ends first.
func Wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// readID reads a client id's record from the bucket's leader (a KV Get may
// answer from a replica that lags, and a compare-and-set on what it read
// fails until it catches up): its revision (0 when the key never existed)
// and value (nil when deleted).
func (r *Registry) readID(ctx context.Context, key string) (uint64, []byte, error) {
	return ReadLast(ctx, r.nc, r.cfg.Prefix+"_ids", key)
}

// ReadLast reads key's last value in a KV bucket from the leader of the
// bucket's stream, with the stream's message-get request (the KV API may
// read a replica that lags behind a write a majority confirmed): its
// revision (0 when the key never existed) and value (nil when deleted or
// purged).
func ReadLast(ctx context.Context, nc *nats.Conn, bucket, key string) (uint64, []byte, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return 0, nil, err
	}
	var out struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Code    int    `json:"err_code"`
			Message string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &out); err != nil {
		return 0, nil, err
	}
	switch {
	case out.Error != nil && out.Error.Code == int(jetstream.JSErrCodeMessageNotFound):
		return 0, nil, nil
	case out.Error != nil:
		return 0, nil, fmt.Errorf("read %s: %s", bucket, out.Error.Message)
	case out.Message == nil:
		return 0, nil, fmt.Errorf("read %s: empty answer", bucket)
	}
	if bytes.Contains(out.Message.Hdrs, []byte("KV-Operation")) {
		return out.Message.Seq, nil, nil // deleted or purged
	}
	return out.Message.Seq, out.Message.Data, nil
}

// purge removes key's record from kv when its revision is rev (0: the
// key's records whatever they are), with the stream's purge of the key's
// subject below rev+1: a compare-and-set delete, as KV's Delete with
// LastRevision (a bucket keeps one revision per key, so the record at rev
// exists only while it is the last), that leaves no delete marker. A
// marker would stay in the bucket, on disk and in every core's per-subject
// index, until the key is written again, so every client id ever seen
// would cost every core memory. Watches see no change: none needs to (a
// claim's watch acts on records naming another node). It returns
// jetstream.ErrKeyRevisionMismatch when the record at rev is gone.
func (r *Registry) purge(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64) error {
	req := struct {
		Filter string `json:"filter"`
		Seq    uint64 `json:"seq,omitempty"`
	}{"$KV." + kv.Bucket() + "." + key, 0}
	if rev != 0 {
		req.Seq = rev + 1 // purges below it
	}
	body, _ := json.Marshal(req)
	var out struct {
		apiAnswer
		Purged uint64 `json:"purged"`
	}
	if err := jsAPI(ctx, r.nc, "$JS.API.STREAM.PURGE.KV_"+kv.Bucket(), body, "purge "+kv.Bucket(), &out); err != nil {
		return err
	}
	if out.Purged == 0 && rev != 0 {
		return jetstream.ErrKeyRevisionMismatch
	}
	return nil
}

// apiAnswer is the error part of a JetStream API answer; the answers
// jsAPI decodes embed it.
type apiAnswer struct {
	Error *struct {
		Message string `json:"description"`
	} `json:"error"`
}

func (a *apiAnswer) answer() *apiAnswer { return a }

// jsAPI sends body to a JetStream API subject and decodes the answer
// into out; an error answer is an error naming what was asked.
func jsAPI(ctx context.Context, nc *nats.Conn, subject string, body []byte, what string, out interface{ answer() *apiAnswer }) error {
	resp, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return err
	}
	if json.Unmarshal(resp.Data, out) != nil {
		return fmt.Errorf("%s: unreadable answer", what)
	}
	if e := out.answer().Error; e != nil {
		return fmt.Errorf("%s: %s", what, e.Message)
	}
	return nil
}

// supersede asks the node of prev to end the session it held under
// token, and waits for its answer (bounded: a node that does not answer is
// dying, and its connection goes with it).
func (r *Registry) supersede(ctx context.Context, key string, prev idRecord, id string, token uint64, clean bool) {
	r.mu.Lock()
	r.kicking[key]++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.kicking[key]--; r.kicking[key] == 0 {
			delete(r.kicking, key)
		}
		r.mu.Unlock()
	}()
	if f := r.beforeKick; f != nil {
		f()
	}
	v, _ := json.Marshal(kick{ClientID: id, Token: token, Clean: clean})
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := r.nc.RequestWithContext(ctx, r.kickSubject(prev.Node, prev.Inc), v); err != nil {
		r.log.Warn("cluster: the node that held the client id did not confirm the takeover",
			"client_id", id, "node", prev.Node, "err", err)
	}
}

// onKickMsg ends a session another node took over.
func (r *Registry) onKickMsg(m *nats.Msg) {
	var k kick
	if json.Unmarshal(m.Data, &k) != nil {
		return
	}
	if f := r.onKick.Load(); f != nil && (*f)() {
		return
	}
	r.mu.Lock()
	kicking := r.kicking[enc(k.ClientID)] > 0
	r.mu.Unlock()
	if kicking {
		// A CONNECT here claimed the id and, holding its lock, waits for
		// the answer to a takeover request of its own, maybe from the
		// requester: answer now, not after that lock, or both wait out
		// their timeouts. That CONNECT takes the session over here anyway;
		// the session named ends once it has, by the requester's claim.
		_ = m.Respond([]byte{1})
	}
	// Off the subscription's goroutine: Supersede waits for the client
	// id's lock, which a CONNECT here may hold while it claims.
	go func() {
		r.b.Supersede(k.ClientID, k.Token, k.Clean)
		if !kicking {
			_ = m.Respond([]byte{1})
		}
	}()
}

// Release implements broker.Registry.
func (r *Registry) Release(clientID string, token uint64) {
	if !r.ready.Load() {
		return
	}
	key := enc(clientID)
	if key[0] == '=' {
		r.mu.Lock()
		delete(r.longIDs, key)
		r.mu.Unlock()
	}
	r.async(func(ctx context.Context) {
		_ = r.purge(ctx, r.ids, key, token)
	})
}

// onIDChange ends the session this node holds for a client id whose
// record now names another node, or another run of this one: the
// takeover request of the node that claimed it may never have arrived (a
// timeout, a link lost), and one session per client id must stay. The
// watch is an ordered consumer: after a disconnection from NATS it
// resumes where it stopped, so the changes missed meanwhile still come.
func (r *Registry) onIDChange(e jetstream.KeyValueEntry) {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return
	}
	var rec idRecord
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Node == r.cfg.Node && rec.Inc == r.inc {
		return
	}
	id, ok := decKey(e.Key())
	if !ok {
		r.mu.Lock()
		id, ok = r.longIDs[e.Key()]
		r.mu.Unlock()
	}
	if ok {
		r.b.SupersedeBefore(id, e.Revision(), rec.Clean)
	}
}

// async runs fn on its own goroutine with an operation's deadline; Close
// waits for it.
func (r *Registry) async(fn func(ctx context.Context)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := r.opCtx(context.Background())
		defer cancel()
		fn(ctx)
	}()
}

// NodeName is this node's name.
func (r *Registry) NodeName() string { return r.cfg.Node }

// Stepdowns is the number of times this node asked the leader of one of
// the buckets' streams to step down because it kept refusing a key's
// compare-and-sets with 10164 while the key was unchanged (CASGuard).
func (r *Registry) Stepdowns() uint64 { return r.guard.Stepdowns() }

// decKey reverses enc for keys that are not digests.
func decKey(k string) (string, bool) {
	if k == "" || k[0] == '=' {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(k)
	return string(b), err == nil
}

// replicasNotSupported says whether err is JetStream's "replicas > 1 not
// supported in non-clustered mode" (10074).
func replicasNotSupported(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == 10074
}
