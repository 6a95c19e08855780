package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeNode stands for a broker: it holds the claims it made, as live
// sessions, and ends one when Supersede names it. lock is the client id's
// lock that the broker's CONNECT holds while it claims.
type fakeNode struct {
	mu    sync.Mutex
	live  map[string]uint64
	locks sync.Map // client id -> *sync.Mutex
}

func (f *fakeNode) lock(id string) func() {
	m, _ := f.locks.LoadOrStore(id, new(sync.Mutex))
	m.(*sync.Mutex).Lock()
	return m.(*sync.Mutex).Unlock
}

func (f *fakeNode) Supersede(id string, token uint64, clean bool) bool {
	defer f.lock(id)()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live[id] != token {
		return false
	}
	delete(f.live, id)
	return true
}

func (f *fakeNode) SupersedeBefore(id string, rev uint64, clean bool) {
	go func() {
		defer f.lock(id)()
		f.mu.Lock()
		defer f.mu.Unlock()
		if t, ok := f.live[id]; ok && t < rev {
			delete(f.live, id)
		}
	}()
}

func (f *fakeNode) FireWill([]byte) error                 { return nil }
func (f *fakeNode) ApplyRetained(*broker.Message)         {}
func (f *fakeNode) PruneRetained(func(topic string) bool) {}

// claim is a CONNECT of id on this node.
func (f *fakeNode) claim(t *testing.T, r *Registry, id string) {
	defer f.lock(id)()
	c := &broker.Claim{ClientID: id, Decide: func(o string) (string, error) { return o, nil }}
	if err := r.Claim(context.Background(), c); err != nil {
		t.Errorf("claim %s: %v", id, err)
		return
	}
	f.mu.Lock()
	f.live[id] = c.Token
	f.mu.Unlock()
}

func (f *fakeNode) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.live[id]
	return ok
}

type testNode struct {
	r    *Registry
	fake *fakeNode
}

// startNodes starts one Registry per server of nc, named a, b, c...
func startNodes(t *testing.T, nc *natsCluster, n int, cfg Config) []testNode {
	t.Helper()
	var out []testNode
	for i := range n {
		c := cfg
		c.Conn = nc.Conn(t, i%len(nc.Servers))
		c.Node = string(rune('a' + i))
		c.Replicas = len(nc.Servers)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeNode{live: map[string]uint64{}}
		if err := r.Start(ctx, f); err != nil {
			t.Fatal(err)
		}
		cancel()
		t.Cleanup(r.Close)
		out = append(out, testNode{r, f})
	}
	return out
}

// TestClaimRaceOneWins claims the same client id on two nodes at once, a
// hundred times (every other time over a claim a third node holds): each
// time exactly one of them holds it afterwards, and the record names it.
func TestClaimRaceOneWins(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startNodes(t, nc, 3, Config{})
	a, b, c := nodes[0], nodes[1], nodes[2]
	for i := range 100 {
		id := fmt.Sprintf("race-%d", i)
		if i%2 == 1 {
			c.fake.claim(t, c.r, id)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, n := range []testNode{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				n.fake.claim(t, n.r, id)
			}()
		}
		close(start)
		wg.Wait()
		// A takeover request that crossed a claim of the node it asks is
		// answered at once, and its session ends when that claim is done.
		deadline := time.Now().Add(e2eWait)
		holders := 0
		for {
			holders = 0
			for _, n := range nodes {
				if n.fake.has(id) {
					holders++
				}
			}
			if holders <= 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond) // polling the takeovers' ends
		}
		if holders != 1 {
			t.Fatalf("%s: %d nodes hold the client id, want 1 (a %v, b %v, c %v)", id, holders,
				a.fake.has(id), b.fake.has(id), c.fake.has(id))
		}
	}
}

// TestOneCoreOneReplica: with JetStream not clustered (one core), the
// buckets are made with one replica instead of failing.
func TestOneCoreOneReplica(t *testing.T) {
	nc := startNATS(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := New(Config{Conn: nc.Conn(t, 0), Node: "a", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Start(ctx, &fakeNode{live: map[string]uint64{}}); err != nil {
		t.Fatal(err)
	}
	if r.cfg.Replicas != 1 {
		t.Fatalf("replicas %d, want 1", r.cfg.Replicas)
	}
}

// willNode is a fakeNode that counts the wills it publishes.
type willNode struct {
	fakeNode
	fired chan []byte
}

func (w *willNode) FireWill(data []byte) error { w.fired <- data; return nil }

// TestWillOfPreviousRun: a node that stops with a client's will stored
// (killed, or restarted) and starts again, alone in the cluster: its new
// run publishes the will of its previous run, once, after the delay.
func TestWillOfPreviousRun(t *testing.T) {
	nc := startNATS(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{Conn: nc.Conn(t, 0), Node: "a", Heartbeat: 100 * time.Millisecond}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx, &fakeNode{live: map[string]uint64{}}); err != nil {
		t.Fatal(err)
	}
	if tok, _ := first.PutWill(&broker.ClusterWill{ClientID: "dev-1", Delay: 200 * time.Millisecond, Data: []byte("will")}); tok == 0 {
		t.Fatal("will not stored")
	}
	waitWill(t, first, "dev-1")
	first.Close()
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	n := &willNode{fakeNode: fakeNode{live: map[string]uint64{}}, fired: make(chan []byte, 2)}
	start := time.Now()
	if err := second.Start(ctx, n); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-n.fired:
		if string(d) != "will" || time.Since(start) < 200*time.Millisecond {
			t.Fatalf("fired %q after %v", d, time.Since(start))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the previous run's will was not published")
	}
	// Once: the record is gone, so a later election finds nothing.
	if _, err := second.wills.Get(ctx, willKey("a", first.inc, "dev-1")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("will record still there: %v", err)
	}
}

// TestCrossedTakeoversDoNotWait: node a holds a client id; a CONNECT on
// node b claims it and, before b's takeover request leaves, a second
// CONNECT on node a claims it back. Each node's CONNECT holds the id's lock
// and waits for the other's answer: the takeover requests must not wait for
// those locks (each would wait out the 2 s timeout). Both claims end well
// within it, and one node holds the id.
func TestCrossedTakeoversDoNotWait(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startNodes(t, nc, 2, Config{})
	a, b := nodes[0], nodes[1]
	const id = "crossed"
	a.fake.claim(t, a.r, id)
	aClaimed := make(chan struct{})
	var once sync.Once
	b.r.beforeKick = func() {
		once.Do(func() {
			select {
			case <-aClaimed:
			case <-time.After(e2eWait):
			}
		})
	}
	a.r.beforeKick = func() { close(aClaimed) }
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.fake.claim(t, b.r, id) }()
	// a claims once b's claim is in the bucket (b waits before its request).
	deadline := time.Now().Add(e2eWait)
	for {
		e, err := a.r.ids.Get(context.Background(), enc(id))
		if err == nil && strings.Contains(string(e.Value()), `"n":"b"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node b's claim never reached the bucket")
		}
		time.Sleep(5 * time.Millisecond) // polling the bucket
	}
	a.fake.claim(t, a.r, id)
	wg.Wait()
	took := time.Since(start)
	t.Logf("crossed takeovers took %v", took)
	if took > 1500*time.Millisecond {
		t.Errorf("crossed takeovers took %v: the takeover requests waited for the CONNECTs' locks", took)
	}
	deadline = time.Now().Add(e2eWait)
	for a.fake.has(id) == b.fake.has(id) {
		if time.Now().After(deadline) {
			t.Fatalf("node a holds it %v, node b %v: want exactly one", a.fake.has(id), b.fake.has(id))
		}
		time.Sleep(5 * time.Millisecond) // polling the takeovers' ends
	}
}

// waitWill waits until r's record of clientID's will is in the bucket.
func waitWill(t *testing.T, r *Registry, clientID string) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		if _, err := r.wills.Get(context.Background(), willKey(r.cfg.Node, r.inc, clientID)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("will of %s not in the cluster", clientID)
		}
		time.Sleep(10 * time.Millisecond) // polling the asynchronous write
	}
}

// TestDeadNodesForgotten: a node remembers a dead node's incarnation only
// while wills of it are left: node c dies with a client's will, which node
// a publishes; then node b dies without any: node a forgets both.
func TestDeadNodesForgotten(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startNodes(t, nc, 3, Config{Heartbeat: 50 * time.Millisecond, DeadAfter: 300 * time.Millisecond})
	a, b, c := nodes[0], nodes[1], nodes[2]
	if tok, _ := c.r.PutWill(&broker.ClusterWill{ClientID: "dev-1", Data: []byte("will")}); tok == 0 {
		t.Fatal("will not stored")
	}
	waitWill(t, c.r, "dev-1")
	deadline := time.Now().Add(e2eWait)
	for !a.r.alive("b", b.r.inc) || !a.r.alive("c", c.r.inc) || !a.r.heardOf("b") || !a.r.heardOf("c") {
		if time.Now().After(deadline) {
			t.Fatal("node a never heard of nodes b and c")
		}
		time.Sleep(10 * time.Millisecond) // polling the heartbeats
	}
	c.r.Close()
	for {
		if _, err := a.r.wills.Get(context.Background(), willKey("c", c.r.inc, "dev-1")); errors.Is(err, jetstream.ErrKeyNotFound) {
			break // published
		}
		if time.Now().After(deadline) {
			t.Fatal("node c's will was never published")
		}
		time.Sleep(10 * time.Millisecond) // polling the election and the will
	}
	b.r.Close()
	for {
		a.r.mu.Lock()
		n := len(a.r.deadIncs)
		a.r.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node a still remembers %d dead incarnations", n)
		}
		time.Sleep(10 * time.Millisecond) // polling node b's death
	}
}
