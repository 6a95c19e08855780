package cluster

import (
	"context"
	"net"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/cluster/fabric"
	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
)

func TestWireRoundTrip(t *testing.T) {
	now := time.Now().UnixNano()
	m := &broker.Message{Topic: "a/b", Payload: []byte("pl"), QoS: 2, Retain: true, Origin: "c1", AllOrNothing: true, Expiry: now + int64(90*time.Second),
		Props: &packet.Properties{PayloadFormat: 1, ContentType: "ct", ResponseTopic: "rt", CorrelationData: []byte{9},
			User: []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}}
	m.Props.Set(packet.PropPayloadFormat)
	m.Props.Set(packet.PropUser)
	later := now + int64(10*time.Second) // ten seconds on the wire
	got, seq, sender, _, err := decodeMsg(encodeMsg(nil, m, 1, 42, "n1", now, nil, onceID{}), later)
	if err != nil || seq != 42 || sender != "n1" {
		t.Fatalf("decode: %v %d %q", err, seq, sender)
	}
	if got.QoS != 1 || !got.Retain || !got.Keep || !got.Local || !got.Forwarded || got.Origin != "c1" || string(got.Payload) != "pl" ||
		!reflect.DeepEqual(got.Props, m.Props) {
		t.Fatalf("got %+v", got)
	}
	sh, _, _, _, err := decodeMsg(encodeMsg(nil, m, 1, 7, "n1", now, &broker.Share{Group: "g", Filter: "a/+"}, onceID{}), now)
	if err != nil || sh.Share == nil || *sh.Share != (broker.Share{Group: "g", Filter: "a/+"}) || string(sh.Payload) != "pl" {
		t.Errorf("shared frame: %+v %v", sh, err)
	}
	if left := time.Duration(got.Expiry - later); left != 90*time.Second {
		t.Errorf("expiry left %v, want the 90 s it had when sent", left)
	}
	for i := range len(encodeMsg(nil, m, 1, 42, "n1", now, nil, onceID{})) {
		if _, _, _, _, err := decodeMsg(encodeMsg(nil, m, 1, 42, "n1", now, nil, onceID{})[:i], now); err == nil && i < 10 {
			t.Errorf("truncated at %d decoded", i)
		}
	}
}

type node struct {
	f    *fabric.Fabric
	r    *Router
	b    *broker.Broker
	addr string
}

// startNodes starts n replicants (no JetStream) routed to each other, each
// with a broker and a router, in this process.
func startNodes(t testing.TB, n int) []*node { return startNodesWith(t, n, nil) }

// startNodesWith is startNodes with cfg changing each node's cluster config.
func startNodesWith(t testing.TB, n int, cfg func(*config.Cluster)) []*node {
	ports := clustertest.FreePorts(t, n)
	var out []*node
	for i := range n {
		c := config.Default().Cluster
		c.NodeName, c.Role, c.Secret = "n"+strconv.Itoa(i), "replicant", "s"
		c.Listen = "127.0.0.1:" + strconv.Itoa(ports[i])
		c.NodeTimeout, c.AckTimeout = time.Second, 5*time.Second
		if cfg != nil {
			cfg(&c)
		}
		for j, p := range ports {
			if j != i {
				c.Peers = append(c.Peers, "127.0.0.1:"+strconv.Itoa(p))
			}
		}
		f, err := fabric.Start(c, "", nil)
		for try := 0; err != nil && try < 3; try++ {
			// Its port was taken meanwhile: another (gossip completes the mesh).
			c.Listen = "127.0.0.1:" + strconv.Itoa(clustertest.FreePorts(t, 1)[0])
			f, err = fabric.Start(c, "", nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		r := New(f, nil)
		addr, b := brokertest.Serve(t, broker.Options{Config: config.Default().MQTT, AllowAnonymous: true, Hooks: []broker.Hook{r}})
		b.SetSharedRouter(r)
		if err := r.Start(b); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); f.Close() })
		out = append(out, &node{f, r, b, addr})
	}
	return out
}

func (n *node) peerFilters(name string) map[string]byte {
	n.r.mu.Lock()
	defer n.r.mu.Unlock()
	if p := n.r.peers[name]; p != nil {
		return maps(p.filters)
	}
	return nil
}

func maps(m map[string]byte) map[string]byte {
	out := make(map[string]byte, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// TestInterestFollowsSubscriptions: a node learns another's filters when
// they are subscribed, and forgets them after an unsubscribe and after a
// clean session's disconnect.
func TestInterestFollowsSubscriptions(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "s", Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "s", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}, {Topic: "$share/g/u/+", QoS: 2}, {Topic: "v", QoS: 0}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n0 to learn n1's filters", func() bool {
		return reflect.DeepEqual(a.peerFilters("n1"), map[string]byte{"t/#": 1, "$share/g/u/+": 2, "v": 0})
	})
	if _, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"v"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n0 to forget v", func() bool { _, ok := a.peerFilters("n1")["v"]; return !ok })
	c.Disconnect(&paho.Disconnect{})
	eventually(t, "n0 to forget the disconnected session's filters", func() bool { return len(a.peerFilters("n1")) == 0 })
}

// TestWatchNodeGone: a node that stops is reported gone within
// node_timeout and a heartbeat, and its filters are dropped.
func TestWatchNodeGone(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	eventually(t, "n0 to know n1", func() bool { return len(a.r.Nodes()) == 1 })
	gone := make(chan string, 4)
	a.r.Watch(func(node string, up bool) {
		if !up {
			gone <- node
		}
	})
	start := time.Now()
	b.r.Close()
	b.f.Close()
	select {
	case n := <-gone:
		if n != "n1" {
			t.Fatalf("gone: %s", n)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("reported gone after %v (node_timeout 1s)", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("n1 never reported gone")
	}
	if len(a.r.Nodes()) != 0 {
		t.Errorf("nodes %v after n1 left", a.r.Nodes())
	}
}

// TestAckTimeoutFailsPublish: a node that stays alive (heartbeats) but
// does not accept a message makes the QoS 1 publish fail with 0x80 after
// ack_timeout, never succeed; on a link and through NATS.
func TestAckTimeoutFailsPublish(t *testing.T) {
	for _, link := range []string{"", "off"} {
		t.Run("link_listen="+link, func(t *testing.T) {
			ns := startNodesWith(t, 2, func(c *config.Cluster) { c.LinkListen = link })
			a, b := ns[0], ns[1]
			sub := dialPaho(t, b.addr, "sub")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			subscribeSeen(t, sub, a, "n1", "q")
			// n1 stops taking forwarded messages, and keeps its heartbeats.
			unblock := make(chan struct{})
			t.Cleanup(func() { close(unblock) })
			hook := func() { <-unblock }
			b.r.testInject.Store(&hook)
			pub := dialPaho(t, a.addr, "pub")
			start := time.Now()
			pr, err := pub.Publish(ctx, &paho.Publish{Topic: "q", QoS: 1, Payload: []byte("x")})
			if pr == nil || pr.ReasonCode != packet.ErrUnspecified.Value {
				t.Fatalf("publish: %+v %v, want PUBACK 0x80", pr, err)
			}
			if d := time.Since(start); d < 4*time.Second {
				t.Errorf("failed after %v, before ack_timeout (5s)", d)
			}
			if got, want := a.routeTo(t, "n1").link != nil, link == ""; got != want {
				t.Errorf("route on a link: %v, want %v", got, want)
			}
		})
	}
}

// subscribeSeen subscribes c to filter at QoS 1 and waits until node
// from has learned it from node to.
func subscribeSeen(t *testing.T, c *paho.Client, from *node, to, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, from.r.node+" to learn "+filter, func() bool { _, ok := from.peerFilters(to)[filter]; return ok })
}

func dialPaho(t *testing.T, addr, id string) *paho.Client {
	t.Helper()
	return dialPahoWith(t, addr, id, nil)
}

// dialPahoWith connects a v5 client; mod may change its config.
func dialPahoWith(t *testing.T, addr, id string, mod func(*paho.ClientConfig)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn, PacketTimeout: 30 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}); conn.Close() })
	return c
}

// TestInterestRestoredOnReturn: a node seen gone (silent past
// node_timeout, here made so by hand) that is heard again with the same
// run is routed to with its filters as soon as it is known again, not
// only once a sync answers (fails without Router.gone: the Kafka bridge's
// commands behind a held one, published at once, reached nobody there).
func TestInterestRestoredOnReturn(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	sub := dialPaho(t, b.addr, "sub")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subscribeSeen(t, sub, a, "n1", "cmd/#")
	back := make(chan map[string]byte, 4)
	var seenGone atomic.Bool
	a.r.Watch(func(node string, up bool) {
		switch {
		case !up:
			seenGone.Store(true)
		case seenGone.Load():
			back <- a.peerFilters(node) // before any sync could answer
		}
	})
	a.r.mu.Lock()
	a.r.peers["n1"].lastSeen.Store(time.Now().Add(-time.Minute).UnixNano())
	a.r.mu.Unlock()
	a.r.expire()
	if !seenGone.Load() {
		t.Fatal("n1 not seen gone")
	}
	select {
	case f := <-back:
		if _, ok := f["cmd/#"]; !ok {
			t.Errorf("n1 known again with filters %v, want cmd/# at once", f)
		}
	case <-ctx.Done():
		t.Fatal("n1 never heard again")
	}
}
