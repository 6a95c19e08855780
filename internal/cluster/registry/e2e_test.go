package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const e2eWait = 20 * time.Second

// ownerAuth makes the username the client's identity; "root" is a superuser.
type ownerAuth struct{}

func (ownerAuth) Authenticate(_ context.Context, c *broker.ClientInfo, p *packet.Connect) error {
	c.Owner = p.Username
	c.Superuser = p.Username == "root"
	return nil
}

// node is a broker of the cluster in the test process: its Registry on its
// own connection to one of the NATS servers.
type node struct {
	name  string
	r     *Registry
	b     *broker.Broker
	addr  string
	nc    *nats.Conn
	fired atomic.Int32 // elections won, for will tests
	lost  atomic.Int32 // elections lost
}

// startBrokers starts n brokers, node i on NATS server i mod the servers.
func startBrokers(t *testing.T, nc *natsCluster, n int, cfg Config) []*node {
	t.Helper()
	var out []*node
	for i := range n {
		c := cfg
		c.Conn = nc.Conn(t, i%len(nc.Servers))
		c.Node = string(rune('a' + i))
		c.Replicas = len(nc.Servers)
		c.Logger = slog.New(slog.NewTextHandler(t.Output(), nil)).With("node", c.Node)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{name: c.Node, r: r, nc: c.Conn}
		r.onElect = func(won bool) {
			if won {
				nd.fired.Add(1)
			} else {
				nd.lost.Add(1)
			}
		}
		t.Cleanup(r.Close) // after the broker's shutdown (cleanups run last first)
		mqtt := config.Default().MQTT
		nd.addr, nd.b = brokertest.Serve(t, broker.Options{Config: mqtt, AllowAnonymous: true,
			Authenticator: ownerAuth{}, SuperuserTakeover: true, Registry: r, RetainedReplica: r})
		if err := r.Start(ctx, nd.b); err != nil {
			t.Fatal(err)
		}
		cancel()
		out = append(out, nd)
	}
	return out
}

// knownBy waits until every other node has heard n's heartbeat.
func (n *node) knownBy(t *testing.T, others ...*node) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for _, o := range others {
		for !o.r.alive(n.name, n.r.inc) || !o.r.heardOf(n.name) {
			if time.Now().After(deadline) {
				t.Fatalf("node %s never heard of node %s", o.name, n.name)
			}
			time.Sleep(10 * time.Millisecond) // polling the heartbeats
		}
	}
}

// heardOf says whether node's heartbeat ever reached this one.
func (r *Registry) heardOf(node string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.seen[node]
	return ok
}

// kill makes the node silent, as if its process died: no heartbeat, no
// answer to takeovers, no access to the cluster. Its broker still holds
// its clients, and publishes nothing the cluster does not let it.
func (n *node) kill() {
	n.nc.Close()
	n.r.Close()
}

// client is a paho v5 client with what it received.
type client struct {
	*paho.Client
	gone chan *paho.Disconnect
	mu   sync.Mutex
	msgs []*paho.Publish
	got  chan struct{}
}

type dialOpts struct {
	user  string
	clean bool
	will  *paho.WillMessage
	delay uint32
}

// dial connects id to addr; it returns the CONNACK (and no error) when the
// server refused it.
func dial(t *testing.T, addr, id string, o dialOpts) (*client, *paho.Connack) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{gone: make(chan *paho.Disconnect, 1), got: make(chan struct{}, 1000)}
	c.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnServerDisconnect: func(d *paho.Disconnect) { c.gone <- d },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.msgs = append(c.msgs, p.Packet)
			c.mu.Unlock()
			c.got <- struct{}{}
			return true, nil
		}}})
	cp := &paho.Connect{ClientID: id, CleanStart: o.clean, KeepAlive: 30, WillMessage: o.will}
	if o.user != "" {
		cp.UsernameFlag, cp.Username = true, o.user
	}
	if o.will != nil && o.delay > 0 {
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &o.delay}
	}
	exp := uint32(300)
	cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &exp}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if ack == nil && err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	if ack.ReasonCode == 0 {
		t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	}
	return c, ack
}

func (c *client) sub(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
}

func (c *client) pub(t *testing.T, topic, payload string, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until a message on topic arrived and returns the topics
// received so far.
func (c *client) waitFor(t *testing.T, topic string, d time.Duration) ([]string, bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		var topics []string
		for _, m := range c.msgs {
			topics = append(topics, m.Topic)
		}
		c.mu.Unlock()
		if slices.Contains(topics, topic) {
			return topics, true
		}
		select {
		case <-c.got:
		case <-deadline:
			return topics, false
		}
	}
}

func (c *client) count(topic string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if m.Topic == topic {
			n++
		}
	}
	return n
}

func waitGone(t *testing.T, c *client, what string) *paho.Disconnect {
	t.Helper()
	select {
	case d := <-c.gone:
		return d
	case <-time.After(e2eWait):
		t.Fatalf("%s: no DISCONNECT", what)
		return nil
	}
}

// TestTakeoverAcrossNodes connects one client id on node a, then on node
// b, and so on, a hundred times: each time the previous connection gets
// DISCONNECT 0x8E. It logs the takeover latency (CONNECT sent on one node
// to DISCONNECT received on the other).
func TestTakeoverAcrossNodes(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	prev, _ := dial(t, nodes[0].addr, "dev-1", dialOpts{user: "alice", clean: true})
	var lat []time.Duration
	for i := 1; i <= 100; i++ {
		start := time.Now()
		cur, ack := dial(t, nodes[i%2].addr, "dev-1", dialOpts{user: "alice", clean: i%3 == 0})
		if ack.ReasonCode != 0 {
			t.Fatalf("takeover %d: CONNACK %#x", i, ack.ReasonCode)
		}
		d := waitGone(t, prev, "taken-over connection")
		lat = append(lat, time.Since(start))
		if d.ReasonCode != packet.ErrSessionTakenOver.Value {
			t.Fatalf("takeover %d: DISCONNECT %#x, want 0x8E", i, d.ReasonCode)
		}
		prev = cur
	}
	slices.Sort(lat)
	t.Logf("cross-node takeover (CONNECT to the old connection's DISCONNECT 0x8E), %d takeovers: p50 %v, p99 %v, slowest %v",
		len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-5:])
}

// TestTakeoverAcrossNodesKeepsOwnership: a client id alice holds on node
// a is refused to bob on node b (CONNACK 0x87; 3.1.1: 5), and alice stays
// connected; root, a superuser, takes it over (alice gets 0x8E) and the
// session stays alice's: bob is still refused, alice takes it back.
func TestTakeoverAcrossNodesKeepsOwnership(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	a, b := nodes[0], nodes[1]
	alice, _ := dial(t, a.addr, "dev-1", dialOpts{user: "alice", clean: true})
	if _, ack := dial(t, b.addr, "dev-1", dialOpts{user: "bob", clean: true}); ack.ReasonCode != packet.ErrNotAuthorized.Value {
		t.Fatalf("bob on node b: CONNACK %#x, want 0x87", ack.ReasonCode)
	}
	// A 3.1.1 client of another identity gets return code 5.
	v3 := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID("dev-1").
		SetUsername("bob").SetAutoReconnect(false).SetConnectTimeout(e2eWait))
	tok := v3.Connect()
	if !tok.WaitTimeout(e2eWait) {
		t.Fatal("3.1.1 bob: no CONNACK")
	}
	if rc := tok.(*mqtt.ConnectToken).ReturnCode(); rc != 5 {
		t.Fatalf("3.1.1 bob on node b: return code %d, want 5", rc)
	}
	// alice is still connected: the superuser's takeover disconnects her.
	root, ack := dial(t, b.addr, "dev-1", dialOpts{user: "root", clean: true})
	if ack.ReasonCode != 0 {
		t.Fatalf("root on node b: CONNACK %#x", ack.ReasonCode)
	}
	if d := waitGone(t, alice, "alice"); d.ReasonCode != packet.ErrSessionTakenOver.Value {
		t.Fatalf("alice: DISCONNECT %#x, want 0x8E", d.ReasonCode)
	}
	if _, ack := dial(t, a.addr, "dev-1", dialOpts{user: "bob", clean: true}); ack.ReasonCode != packet.ErrNotAuthorized.Value {
		t.Fatalf("bob on node a after the superuser: CONNACK %#x, want 0x87", ack.ReasonCode)
	}
	if _, ack := dial(t, a.addr, "dev-1", dialOpts{user: "alice", clean: true}); ack.ReasonCode != 0 {
		t.Fatalf("alice taking her session back: CONNACK %#x", ack.ReasonCode)
	}
	waitGone(t, root, "root")
}

// TestIDsReleasedWhenNodeDies: a node that dies holding alice's client id
// is seen dead within DeadAfter (plus a heartbeat); the id keeps its owner:
// bob, refused while the node lived, is still refused once it is seen dead
// (a node's silence must not hand the id to another identity), and alice
// takes it on another node without waiting for the dead one.
func TestIDsReleasedWhenNodeDies(t *testing.T) {
	nc := startNATS(t, 3)
	cfg := Config{Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second}
	nodes := startBrokers(t, nc, 2, cfg)
	a, b := nodes[0], nodes[1]
	dial(t, a.addr, "dev-1", dialOpts{user: "alice", clean: true})
	if _, ack := dial(t, b.addr, "dev-1", dialOpts{user: "bob", clean: true}); ack.ReasonCode != packet.ErrNotAuthorized.Value {
		t.Fatalf("bob while node a lives: CONNACK %#x, want 0x87", ack.ReasonCode)
	}
	a.knownBy(t, b)
	a.kill()
	killed := time.Now()
	for b.r.alive(a.name, a.r.inc) {
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("the dead node is still alive for node b after %v", time.Since(killed))
		}
		time.Sleep(20 * time.Millisecond) // polling the liveness
	}
	took := time.Since(killed)
	t.Logf("node seen dead %v after it died (heartbeat %v, dead after %v)", took, cfg.Heartbeat, cfg.DeadAfter)
	if limit := cfg.DeadAfter + cfg.Heartbeat + 500*time.Millisecond; took > limit {
		t.Errorf("seen dead after %v, documented bound %v", took, limit)
	}
	if _, ack := dial(t, b.addr, "dev-1", dialOpts{user: "bob", clean: true}); ack.ReasonCode != packet.ErrNotAuthorized.Value {
		t.Fatalf("bob once node a is seen dead: CONNACK %#x, want 0x87", ack.ReasonCode)
	}
	start := time.Now()
	if _, ack := dial(t, b.addr, "dev-1", dialOpts{user: "alice", clean: true}); ack.ReasonCode != 0 {
		t.Fatalf("alice on node b: CONNACK %#x", ack.ReasonCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("alice's CONNECT took %v: it waited for the dead node", d)
	}
}

// TestRetainedAcrossNodes: a retained message set on node a is delivered
// on subscribe at node b; cleared on a, it is no longer.
func TestRetainedAcrossNodes(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	a, b := nodes[0], nodes[1]
	pa, _ := dial(t, a.addr, "pub", dialOpts{clean: true})
	pa.pub(t, "r/1", "one", true)
	pa.pub(t, "r/2", "two", true)
	// Writes to the bucket are ordered, but one refused while the bucket
	// settles is written again a heartbeat later, after its successors:
	// so wait for the set, not for the last topic.
	subscribeFor(t, b.addr, "r/#", "r/2", func(got []string) bool { return slices.Contains(got, "r/1") })
	pa.pub(t, "r/1", "", true) // clears it
	pa.pub(t, "r/3", "three", true)
	subscribeFor(t, b.addr, "r/#", "r/3", func(got []string) bool { return !slices.Contains(got, "r/1") })
}

// subscribeFor subscribes to filter on addr with new clients until the
// retained messages one gets include marker and satisfy ok.
func subscribeFor(t *testing.T, addr, filter, marker string, ok func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	var got []string
	for !ok(got) {
		if time.Now().After(deadline) {
			t.Fatalf("node %s delivered %v for %s", addr, got, filter)
		}
		got = subscribeUntil(t, addr, filter, marker)
	}
}

// subscribeUntil subscribes to filter on addr with new clients until the
// retained messages it gets include marker, and returns their topics.
func subscribeUntil(t *testing.T, addr, filter, marker string) []string {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for i := 0; ; i++ {
		c, _ := dial(t, addr, "sub", dialOpts{clean: true})
		c.sub(t, filter)
		if got, ok := c.waitFor(t, marker, 200*time.Millisecond); ok {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no retained %s at %s", marker, addr)
		}
		c.Disconnect(&paho.Disconnect{})
	}
}

// TestForwardedRetainedNotStored: a retained message the cluster forwarded
// to a node (Message.Forwarded) is not written to the cluster by it.
func TestForwardedRetainedNotStored(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 1, Config{})
	a := nodes[0]
	ctx := context.Background()
	a.b.Publish(ctx, &broker.Message{Topic: "f/local", Payload: []byte("x"), Retain: true, Local: true, Forwarded: true}, nil)
	a.b.Publish(ctx, &broker.Message{Topic: "f/marker", Payload: []byte("x"), Retain: true}, nil)
	deadline := time.Now().Add(e2eWait)
	for {
		_, err := a.r.ret.Get(ctx, enc("f/marker"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("marker not in the cluster: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling the asynchronous write
	}
	if _, err := a.r.ret.Get(ctx, enc("f/local")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("forwarded retained message in the cluster: %v", err)
	}
}

// TestWillOnceWhenNodeDies: the client with a will on node a; node a dies.
// Nodes b and c both compete for the will; exactly one wins and publishes
// it, after the will delay.
func TestWillOnceWhenNodeDies(t *testing.T) {
	nc := startNATS(t, 3)
	cfg := Config{Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second}
	nodes := startBrokers(t, nc, 3, cfg)
	a, b, c := nodes[0], nodes[1], nodes[2]
	sb, _ := dial(t, b.addr, "sub-b", dialOpts{clean: true})
	sc, _ := dial(t, c.addr, "sub-c", dialOpts{clean: true})
	for _, s := range []*client{sb, sc} {
		s.sub(t, "will/#")
		s.sub(t, "mark")
	}
	dial(t, a.addr, "dev-1", dialOpts{clean: true, will: &paho.WillMessage{Topic: "will/dev-1", QoS: 1, Payload: []byte("gone")}, delay: 1})
	// Both survivors read the will before either writes: the election is
	// decided by the compare-and-set alone.
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	for _, n := range []*node{b, c} {
		var once sync.Once
		n.r.beforeElect = func() {
			once.Do(arrived.Done)
			select {
			case <-both:
			case <-time.After(e2eWait):
			}
		}
	}
	a.knownBy(t, b, c)
	a.kill()
	killed := time.Now()
	deadline := time.After(e2eWait)
	for b.fired.Load()+b.lost.Load() < 1 || c.fired.Load()+c.lost.Load() < 1 {
		select {
		case <-deadline:
			t.Fatal("the survivors did not compete for the will")
		case <-time.After(10 * time.Millisecond): // polling the elections
		}
	}
	if n := b.fired.Load() + c.fired.Load(); n != 1 {
		t.Fatalf("%d survivors elected to publish the will, want 1", n)
	}
	winner := sb
	if c.fired.Load() == 1 {
		winner = sc
	}
	if _, ok := winner.waitFor(t, "will/dev-1", e2eWait); !ok {
		t.Fatal("the will was not published")
	}
	if took := time.Since(killed); took < time.Second {
		t.Errorf("will published %v after the node died, before its 1 s delay", took)
	}
	// Markers after the will: a second will would have come before them.
	for _, s := range []*client{sb, sc} {
		s.pub(t, "mark", "m", false)
		if _, ok := s.waitFor(t, "mark", e2eWait); !ok {
			t.Fatal("marker lost")
		}
	}
	if n := sb.count("will/dev-1") + sc.count("will/dev-1"); n != 1 {
		t.Fatalf("will published %d times, want once", n)
	}
}

// TestDelayedWillCancelledByReconnectElsewhere: a client with a delayed
// will leaves node a and comes back on node b within the delay, without
// clean start: the will is not published. A twin that leaves just after
// it and does not come back has its will published: by then the first
// one's delay has passed.
func TestDelayedWillCancelledByReconnectElsewhere(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	a, b := nodes[0], nodes[1]
	sa, _ := dial(t, a.addr, "sub-a", dialOpts{clean: true})
	sa.sub(t, "will/#")
	var devs []*client
	for _, id := range []string{"dev-1", "twin"} {
		w := &paho.WillMessage{Topic: "will/" + id, QoS: 1, Payload: []byte("gone")}
		d, _ := dial(t, a.addr, id, dialOpts{clean: true, will: w, delay: 2})
		devs = append(devs, d)
	}
	for _, d := range devs {
		d.Disconnect(&paho.Disconnect{ReasonCode: 0x04}) // with will: it waits out its delay
	}
	dial(t, b.addr, "dev-1", dialOpts{clean: false})
	if _, ok := sa.waitFor(t, "will/twin", e2eWait); !ok {
		t.Fatal("the twin's will was not published")
	}
	if n := sa.count("will/dev-1"); n != 0 {
		t.Fatalf("will published %d times after the client came back within its delay", n)
	}
}

// TestDroppedTakeoverStillLeavesOne: node a drops the takeover request
// of node b (a lost message, a timeout): alice's connection on node a
// still gets DISCONNECT 0x8E, within a second of node b's CONNACK, since
// node a sees the client id's record name node b.
func TestDroppedTakeoverStillLeavesOne(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	a, b := nodes[0], nodes[1]
	var dropped atomic.Int32
	drop := func() bool { dropped.Add(1); return true }
	a.r.onKick.Store(&drop)
	old, _ := dial(t, a.addr, "dev-1", dialOpts{user: "alice", clean: true})
	if _, ack := dial(t, b.addr, "dev-1", dialOpts{user: "alice", clean: true}); ack.ReasonCode != 0 {
		t.Fatalf("alice on node b: CONNACK %#x", ack.ReasonCode)
	}
	acked := time.Now()
	if dropped.Load() == 0 {
		t.Fatal("the takeover request was not sent to node a")
	}
	select {
	case d := <-old.gone:
		if d.ReasonCode != packet.ErrSessionTakenOver.Value {
			t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
		}
		t.Logf("old connection ended %v after the new CONNACK", time.Since(acked))
	case <-time.After(e2eWait):
		t.Fatal("two live sessions: the old connection was never disconnected")
	}
	if d := time.Since(acked); d > time.Second {
		t.Errorf("old connection ended %v after the new CONNACK, bound 1 s", d)
	}
}

// TestConcurrentConnectsLeaveOne: two clients with one client id CONNECT
// at once, one on each node, thirty times: both are accepted (a takeover),
// and exactly one of them is then disconnected with 0x8E; the other
// stays connected (it completes a QoS 1 publish afterwards).
func TestConcurrentConnectsLeaveOne(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	for i := range 30 {
		id := fmt.Sprintf("dup-%d", i)
		var clients [2]*client
		var wg sync.WaitGroup
		start := make(chan struct{})
		for k := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				c, ack := dial(t, nodes[k].addr, id, dialOpts{user: "alice", clean: true})
				if ack.ReasonCode != 0 {
					t.Errorf("%s on node %d: CONNACK %#x", id, k, ack.ReasonCode)
				}
				clients[k] = c
			}()
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			return
		}
		var survivor *client
		select {
		case d := <-clients[0].gone:
			survivor = clients[1]
			if d.ReasonCode != packet.ErrSessionTakenOver.Value {
				t.Fatalf("%s: DISCONNECT %#x", id, d.ReasonCode)
			}
		case d := <-clients[1].gone:
			survivor = clients[0]
			if d.ReasonCode != packet.ErrSessionTakenOver.Value {
				t.Fatalf("%s: DISCONNECT %#x", id, d.ReasonCode)
			}
		case <-time.After(e2eWait):
			var state [2]string
			for k, c := range clients {
				select {
				case <-c.Done():
					state[k] = "closed without DISCONNECT"
				default:
					state[k] = "connected"
				}
			}
			if state[0] == state[1] {
				t.Fatalf("%s: no DISCONNECT 0x8E (node a: %s, node b: %s)", id, state[0], state[1])
			}
			// One left, as required, but the other was closed without
			// its 0x8E (seen once in CI under load; docs/cluster.md).
			t.Logf("%s: the loser was closed without DISCONNECT 0x8E (node a: %s, node b: %s)", id, state[0], state[1])
			survivor = clients[0]
			if state[0] != "connected" {
				survivor = clients[1]
			}
		}
		survivor.pub(t, "alive/"+id, "x", false)
		select {
		case <-survivor.gone:
			t.Fatalf("%s: both connections were disconnected", id)
		default:
		}
	}
}

// TestRetainedWriteDoesNotWaitForCluster: while the cluster does not
// answer the node's retained writes, a client's retained QoS 1 PUBLISH is
// still acknowledged and delivered to a subscriber on its node (the write
// waits in the node's queue, not under the broker's retained lock); once
// the cluster answers, the message reaches the bucket.
func TestRetainedWriteDoesNotWaitForCluster(t *testing.T) {
	nc := startNATS(t, 3)
	a := startBrokers(t, nc, 1, Config{})[0]
	release := make(chan struct{})
	slow := func() error { <-release; return nil }
	a.r.retFault.Store(&slow)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	p, _ := dial(t, a.addr, "pub", dialOpts{clean: true})
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pub(t, "slow/1", "one", true)
		p.pub(t, "slow/2", "two", true)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("retained PUBLISH not acknowledged while the cluster is slow")
	}
	// Each on its own: retained messages of a wildcard come in no set
	// order, and a subscriber that stopped at slow/2 could miss slow/1.
	for _, tp := range []string{"slow/1", "slow/2"} {
		subscribeUntil(t, a.addr, tp, tp) // fails the test if it never comes
	}
	close(release)
	waitBucket(t, a.r, "slow/2")
}

// waitBucket waits until topic's retained message is in the bucket.
func waitBucket(t *testing.T, r *Registry, topic string) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for {
		if _, err := r.ret.Get(context.Background(), enc(topic)); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("retained %s not in the cluster", topic)
		}
		time.Sleep(10 * time.Millisecond) // polling the asynchronous write
	}
}

// TestRetainedWriteRetried: the cluster refuses the node's first retained
// writes; they are counted and written again, in order: the bucket ends
// with the last value of the topic.
func TestRetainedWriteRetried(t *testing.T) {
	nc := startNATS(t, 3)
	a := startBrokers(t, nc, 1, Config{Heartbeat: 50 * time.Millisecond})[0]
	var fails atomic.Int32
	fail := func() error {
		if fails.Add(1) <= 3 {
			return errors.New("test: no quorum")
		}
		return nil
	}
	a.r.retFault.Store(&fail)
	p, _ := dial(t, a.addr, "pub", dialOpts{clean: true})
	p.pub(t, "retry/1", "first", true)
	p.pub(t, "retry/1", "last", true)
	p.pub(t, "retry/marker", "m", true)
	waitBucket(t, a.r, "retry/marker")
	e, err := a.r.ret.Get(context.Background(), enc("retry/1"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := broker.DecodeMessage(e.Value())
	if err != nil || string(m.Payload) != "last" {
		t.Fatalf("bucket holds %q (%v), want the last value", m.Payload, err)
	}
	if a.r.retQ.failed.Load() == 0 {
		t.Fatal("failed writes not counted")
	}
}

// TestWillPutDoesNotWaitForCluster: a CONNECT with a will on node a waits
// for the cluster to store the will, which is slow; it does not hold the
// client id's lock meanwhile: node b takes the id over from node a's
// earlier connection at once (node a answers the takeover request without
// waiting for the will). Once the cluster answers, the will is stored.
func TestWillPutDoesNotWaitForCluster(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	a, b := nodes[0], nodes[1]
	old, _ := dial(t, a.addr, "dev-1", dialOpts{user: "alice", clean: true})
	release := make(chan struct{})
	var stalled atomic.Int32
	slow := func() error { stalled.Add(1); <-release; return nil }
	a.r.willFault.Store(&slow)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	w := &paho.WillMessage{Topic: "will/dev-1", QoS: 1, Payload: []byte("gone")}
	go func() {
		// Stalled in the will's write; its CONNECT may fail once node b
		// took the id (a later takeover): either way is fine here.
		conn, err := net.Dial("tcp", a.addr)
		if err != nil {
			return
		}
		defer conn.Close()
		c := paho.NewClient(paho.ClientConfig{ClientID: "dev-1", Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		defer cancel()
		c.Connect(ctx, &paho.Connect{ClientID: "dev-1", CleanStart: true, KeepAlive: 30, WillMessage: w,
			UsernameFlag: true, Username: "alice"})
	}()
	deadline := time.Now().Add(e2eWait)
	for stalled.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the will's write never started")
		}
		time.Sleep(5 * time.Millisecond) // polling the stalled write
	}
	start := time.Now()
	if _, ack := dial(t, b.addr, "dev-1", dialOpts{user: "alice", clean: true}); ack.ReasonCode != 0 {
		t.Fatalf("alice on node b: CONNACK %#x", ack.ReasonCode)
	}
	took := time.Since(start)
	waitGone(t, old, "the connection on node a")
	if took > 1500*time.Millisecond {
		t.Errorf("takeover took %v while node a stored a will: it waited for the will's write", took)
	}
	a.r.willFault.Store(nil)
	close(release)
	released = true
}

// TestWillPublishedAfterClusterUnreachable: the node cannot reach the
// wills' bucket when its client leaves with its will: the node stays
// alive, so no survivor publishes it; the node tries again and publishes
// it once the bucket answers.
func TestWillPublishedAfterClusterUnreachable(t *testing.T) {
	nc := startNATS(t, 3)
	a := startBrokers(t, nc, 1, Config{Heartbeat: 50 * time.Millisecond})[0]
	sub, _ := dial(t, a.addr, "sub", dialOpts{clean: true})
	sub.sub(t, "will/#")
	dev, _ := dial(t, a.addr, "dev-1", dialOpts{clean: true, will: &paho.WillMessage{Topic: "will/dev-1", QoS: 1, Payload: []byte("gone")}})
	waitWill(t, a.r, "dev-1")
	var fails atomic.Int32
	fail := func() error {
		if fails.Add(1) <= 3 {
			return errors.New("test: no quorum")
		}
		return nil
	}
	a.r.willFault.Store(&fail)
	dev.Disconnect(&paho.Disconnect{ReasonCode: 0x04}) // with will
	if _, ok := sub.waitFor(t, "will/dev-1", e2eWait); !ok {
		t.Fatal("the will was not published")
	}
	if fails.Load() <= 3 {
		t.Fatalf("%d will writes tried, want the failures and a retry", fails.Load())
	}
}
