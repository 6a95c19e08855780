// Package cluster_test runs real `culex serve` clusters on loopback
// (internal/clustertest) with clients on different nodes.
package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const waitTimeout = 20 * time.Second

type msg struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
	Props   *paho.PublishProperties
}

type v5 struct {
	*paho.Client
	t    *testing.T
	msgs chan msg
}

func dialV5(t *testing.T, addr, id string) *v5 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5{t: t, msgs: make(chan msg, 100000)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: conn, PacketTimeout: waitTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			c.msgs <- msg{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS, Retain: p.Retain, Props: p.Properties}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}); conn.Close() })
	return c
}

func (c *v5) sub(filter string, qos byte, id int, rap bool) {
	c.t.Helper()
	s := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos, RetainAsPublished: rap}}}
	if id > 0 {
		s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Subscribe(ctx, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *v5) pub(topic string, qos byte, payload string, mods ...func(*paho.Publish)) (*paho.PublishResponse, error) {
	p := &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}
	for _, m := range mods {
		m(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return c.Publish(ctx, p)
}

type v3 struct {
	mqtt.Client
	msgs chan msg
}

func dialV3(t *testing.T, addr, id string) *v3 {
	t.Helper()
	c := &v3{msgs: make(chan msg, 100000)}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	c.Client = mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func (c *v3) sub(t *testing.T, filter string, qos byte) {
	tok := c.Subscribe(filter, qos, func(_ mqtt.Client, m mqtt.Message) {
		c.msgs <- msg{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos(), Retain: m.Retained()}
	})
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 subscribe: %v", tok.Error())
	}
}

// mosquittoSub runs mosquitto_sub against addr; its lines ("topic payload")
// go to the returned channel.
func mosquittoSub(t *testing.T, addr, filter string) chan msg {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	return mosquittoSubs(t, addr, "mosq-"+port, filter)
}

// recvUntil returns the messages before the first whose payload is marker.
func recvUntil(t *testing.T, who string, ch <-chan msg, marker string) []msg {
	t.Helper()
	var out []msg
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case m := <-ch:
			if m.Payload == marker {
				return out
			}
			out = append(out, m)
		case <-timer.C:
			t.Fatalf("%s: no marker %q within %v (got %d messages)", who, marker, waitTimeout, len(out))
		}
	}
}

// only keeps the messages of topic.
func only(ms []msg, topic string) []msg {
	var out []msg
	for _, m := range ms {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}

// distinct counts the different payloads of ms.
func distinct(ms []msg) int {
	seen := map[string]bool{}
	for _, m := range ms {
		seen[m.Payload] = true
	}
	return len(seen)
}

// primed publishes markers from pub until every channel got one: the
// subscriptions are then known on the publisher's node. Bounded.
func primed(t *testing.T, pub *v5, topic string, chans map[string]chan msg) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	got := map[string]bool{}
	for i := 0; len(got) < len(chans); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions not known cluster-wide within %v (reached %v)", waitTimeout, got)
		}
		mark := "prime-" + strconv.Itoa(i)
		if _, err := pub.pub(topic, 1, mark); err != nil {
			t.Fatal(err)
		}
		for name, ch := range chans {
			if got[name] {
				continue
			}
			select {
			case m := <-ch:
				if strings.HasPrefix(m.Payload, "prime-") {
					got[name] = true
				}
			case <-time.After(100 * time.Millisecond): // one poll of the channel
			}
		}
	}
	// Drain the other primes: a marker flushes each channel.
	if _, err := pub.pub(topic, 1, "primed"); err != nil {
		t.Fatal(err)
	}
	for name, ch := range chans {
		recvUntil(t, name, ch, "primed")
	}
}

func TestCluster(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Replicants: 3, ClusterExtra: "node_timeout: 3s",
		Extra: "auth:\n  sys_superuser_only: false\n"})
	c0, c1, c2, r3, r4 := c.Nodes[0], c.Nodes[1], c.Nodes[2], c.Nodes[3], c.Nodes[4]

	pub := dialV5(t, c0.MQTT(), "pub")
	s5 := dialV5(t, r3.MQTT(), "s5")
	s5.sub("x/#", 2, 7, true)
	s3 := dialV3(t, c1.MQTT(), "s3")
	s3.sub(t, "x/+", 1)
	mq := mosquittoSub(t, r4.MQTT(), "x/#")
	chans := map[string]chan msg{"v5@" + r3.Name: s5.msgs, "v3@" + c1.Name: s3.msgs, "mosquitto@" + r4.Name: mq}
	primed(t, pub, "x/p", chans)

	t.Run("status", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, clustertest.Binary(t), "cluster", "status", "-c", r4.ConfigFile())
		cmd.Env = clustertest.Environ()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("culex cluster status: %v\n%s", err, out)
		}
		for _, n := range c.Nodes {
			if !strings.Contains(string(out), n.Name+" ") || !strings.Contains(string(out), n.ClusterAddr) {
				t.Errorf("status does not list %s at %s:\n%s", n.Name, n.ClusterAddr, out)
			}
		}
		if !strings.Contains(string(out), "leader: c") {
			t.Errorf("status names no leader among the cores:\n%s", out)
		}
		t.Logf("culex cluster status:\n%s", out)
		// Every node's $SYS status reaches a subscriber on another node.
		sys := dialV5(t, c1.MQTT(), "sys")
		sys.sub("$SYS/brokers/+/status", 0, 0, false)
		seen := map[string]bool{}
		deadline := time.After(waitTimeout)
		for len(seen) < len(c.Nodes) {
			select {
			case m := <-sys.msgs:
				seen[strings.Split(m.Topic, "/")[2]] = true
			case <-deadline:
				t.Fatalf("$SYS/brokers/<node>/status seen from %v of %d nodes", seen, len(c.Nodes))
			}
		}
	})

	t.Run("properties", func(t *testing.T) {
		pf := byte(1)
		exp := uint32(100)
		for qos := byte(0); qos <= 2; qos++ {
			_, err := pub.pub("x/props", qos, "hello-"+strconv.Itoa(int(qos)), func(p *paho.Publish) {
				p.Retain = true
				p.Properties = &paho.PublishProperties{PayloadFormat: &pf, MessageExpiry: &exp, ContentType: "text/plain",
					ResponseTopic: "x/reply", CorrelationData: []byte{0, 1, 2},
					User: paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}}}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pub.pub("x/props", 1, "end-props"); err != nil {
			t.Fatal(err)
		}
		got := recvUntil(t, "v5", s5.msgs, "end-props")
		if len(got) != 3 {
			t.Fatalf("v5 subscriber on %s got %d messages, want 3: %+v", r3.Name, len(got), got)
		}
		for i, m := range got {
			p := m.Props
			switch {
			case m.Payload != "hello-"+strconv.Itoa(i) || m.QoS != byte(i) || !m.Retain:
				t.Errorf("message %d: %q qos %d retain %v (want retain-as-published)", i, m.Payload, m.QoS, m.Retain)
			case p == nil || p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.ContentType != "text/plain" ||
				p.ResponseTopic != "x/reply" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 2}) ||
				len(p.User) != 2 || p.User[0].Value != "v1" || p.User[1].Value != "v2":
				t.Errorf("message %d: properties %+v", i, p)
			case p.MessageExpiry == nil || *p.MessageExpiry == 0 || *p.MessageExpiry > 100:
				t.Errorf("message %d: expiry %v, want 1..100", i, p.MessageExpiry)
			case p.SubscriptionIdentifier == nil || *p.SubscriptionIdentifier != 7:
				t.Errorf("message %d: subscription identifier %v, want 7 (computed on the receiving node)", i, p.SubscriptionIdentifier)
			}
		}
		got = recvUntil(t, "v3", s3.msgs, "end-props")
		if len(got) != 3 || got[0].Retain || got[2].QoS != 1 {
			t.Errorf("v3 subscriber on %s: %+v (want 3, retain cleared, QoS capped at 1)", c1.Name, got)
		}
		if got := recvUntil(t, "mosquitto", mq, "end-props"); len(got) != 3 {
			t.Errorf("mosquitto_sub on %s: %+v", r4.Name, got)
		}
	})

	t.Run("order", func(t *testing.T) {
		const n = 500
		for i := range n {
			if _, err := pub.pub("x/order", byte(1+i%2), strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		pub.pub("x/order", 1, "end-order")
		for name, ch := range chans {
			got := only(recvUntil(t, name, ch, "end-order"), "x/order")
			if len(got) != n {
				t.Fatalf("%s: %d messages, want %d", name, len(got), n)
			}
			for i, m := range got {
				if m.Payload != strconv.Itoa(i) {
					t.Fatalf("%s: message %d is %q: order lost [MQTT-4.6.0]", name, i, m.Payload)
				}
			}
		}
	})

	t.Run("replicant joins while traffic flows", func(t *testing.T) {
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				if _, err := pub.pub("x/flow", 1, "f"+strconv.Itoa(i)); err != nil {
					done <- err
					return
				}
			}
		}()
		r5 := c.Add(clustertest.Replicant)
		s := dialV5(t, r5.MQTT(), "late")
		s.sub("x/flow", 1, 0, false)
		deadline := time.After(waitTimeout)
		select {
		case <-s.msgs:
		case <-deadline:
			t.Fatalf("a replicant added while traffic flows received nothing")
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	// $share/g/s/#: members on three nodes, the publisher's among them;
	// every message reaches exactly one member, and every node's members
	// get some.
	t.Run("shared subscription across nodes", func(t *testing.T) {
		members := map[string]*v5{}
		for _, n := range []*clustertest.Node{c0, c1, r3} {
			m := dialV5(t, n.MQTT(), "member-"+n.Name)
			m.sub("$share/g/s/#", 1, 0, false)
			m.sub("s-end", 1, 0, false)
			members[n.Name] = m
		}
		chans := map[string]chan msg{}
		for name, m := range members {
			chans[name] = m.msgs
		}
		primed(t, pub, "s-end", chans)
		const n = 300
		for i := range n {
			if _, err := pub.pub("s/x", 1, "s"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		pub.pub("s-end", 1, "end-shared")
		seen := map[string]string{}
		for name, m := range members {
			got := only(recvUntil(t, name, m.msgs, "end-shared"), "s/x")
			if len(got) == 0 {
				t.Errorf("member on %s got nothing: not balanced across nodes", name)
			}
			for _, g := range got {
				if other, dup := seen[g.Payload]; dup {
					t.Errorf("%s delivered to members on %s and %s", g.Payload, other, name)
				}
				seen[g.Payload] = name
			}
			t.Logf("member on %s: %d messages", name, len(got))
		}
		if len(seen) != n {
			t.Errorf("%d of %d messages reached a member", len(seen), n)
		}
	})

	// A frozen node (SIGSTOP) with a matching subscriber holds the QoS 1
	// PUBACK while another node's subscriber already has the message; the
	// PUBACK comes once it resumes and accepts.
	t.Run("ack waits for every node", func(t *testing.T) {
		r4.Signal(clustertest.Freeze)
		res := make(chan error, 1)
		go func() {
			_, err := pub.pub("x/held", 1, "held")
			res <- err
		}()
		recvUntil(t, "v5", s5.msgs, "held")
		select {
		case err := <-res:
			r4.Signal(clustertest.Thaw)
			t.Fatalf("PUBACK (%v) before the frozen node %s accepted the message", err, r4.Name)
		default:
		}
		r4.Signal(clustertest.Thaw)
		select {
		case err := <-res:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("no PUBACK after the node resumed")
		}
		recvUntil(t, "mosquitto", mq, "held")
		recvUntil(t, "v3", s3.msgs, "held")
	})

	// SIGKILL a node: publishers keep getting PUBACKs within node_timeout
	// plus a margin, and subscribers on the surviving nodes get everything.
	// A publish that waited for the killed node when it was seen gone gets
	// 0x80 (a silent node may be cut off with live subscribers): the
	// client sends it again, so the others may get it twice (QoS 1).
	t.Run("node killed", func(t *testing.T) {
		c2.Kill()
		r4.Kill()
		for i := range 50 {
			start := time.Now()
			for try := 0; ; try++ {
				pr, err := pub.pub("x/kill", 1, "k"+strconv.Itoa(i))
				if err == nil {
					break
				}
				if pr == nil || pr.ReasonCode != 0x80 || try == 2 {
					t.Fatalf("publish %d, try %d: %+v %v", i, try, pr, err)
				}
			}
			if d := time.Since(start); d > 3*time.Second+5*time.Second {
				t.Fatalf("PUBACK %d after %v", i, d)
			}
		}
		pub.pub("x/kill", 1, "end-kill")
		if got := distinct(only(recvUntil(t, "v5", s5.msgs, "end-kill"), "x/kill")); got != 50 {
			t.Errorf("v5 on %s got %d of 50", r3.Name, got)
		}
		if got := distinct(only(recvUntil(t, "v3", s3.msgs, "end-kill"), "x/kill")); got != 50 {
			t.Errorf("v3 on %s got %d of 50", c1.Name, got)
		}
		// The core comes back on its port and data, and rejoins.
		c2.Restart()
		c2.WaitReady()
		s := dialV5(t, c2.MQTT(), "back")
		s.sub("x/back", 1, 0, false)
		primed(t, pub, "x/back", map[string]chan msg{"restarted": s.msgs})
	})
}

// TestThreeCores: three cores only. mosquitto_pub publishes at QoS 2 on
// one core to a 3.1.1 subscriber on another; a core killed with SIGKILL
// and restarted on its port and store rejoins and routes again.
func TestThreeCores(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3})
	c0, c1, c2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	s := dialV3(t, c1.MQTT(), "s3")
	s.sub(t, "m/#", 2)
	p := dialV5(t, c2.MQTT(), "p5")
	primed(t, p, "m/prime", map[string]chan msg{"v3": s.msgs})
	host, port, _ := net.SplitHostPort(c0.MQTT())
	for i := range 20 {
		out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "2", "-t", "m/q2", "-m", "q2-"+strconv.Itoa(i)).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, out)
		}
	}
	p.pub("m/end", 1, "end")
	got := only(recvUntil(t, "v3", s.msgs, "end"), "m/q2")
	if len(got) != 20 {
		t.Fatalf("got %d of 20", len(got))
	}
	for i, m := range got {
		if m.Payload != "q2-"+strconv.Itoa(i) || m.QoS != 2 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	c0.Kill()
	for i := range 10 {
		if _, err := p.pub("m/k", 2, "k"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	p.pub("m/k", 1, "end-k")
	if got := only(recvUntil(t, "v3", s.msgs, "end-k"), "m/k"); len(got) != 10 {
		t.Fatalf("after SIGKILL of %s: got %d of 10", c0.Name, len(got))
	}
	c0.Restart()
	c0.WaitReady()
	s0 := dialV5(t, c0.MQTT(), "s0")
	s0.sub("m/#", 1, 0, false)
	primed(t, p, "m/back", map[string]chan msg{"restarted core": s0.msgs})
}

// TestClusterFrozenNode: a node frozen with SIGSTOP while a publisher
// sends to subscribers on it and on a healthy node. The healthy node keeps
// receiving (QoS 0 and 1), nothing hangs, and the QoS 1 publishes that
// waited for the frozen node fail with 0x80 once it is seen gone
// (node_timeout 2s), before ack_timeout (10s); sent again, they reach the
// healthy node.
func TestClusterFrozenNode(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, ClusterExtra: "max_pending_bytes: 1048576"})
	c0, c1, c2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	healthy := dialV5(t, c1.MQTT(), "healthy")
	healthy.sub("f/#", 1, 0, false)
	frozen := dialV5(t, c2.MQTT(), "frozen")
	frozen.sub("f/#", 1, 0, false)
	pub := dialV5(t, c0.MQTT(), "pub")
	primed(t, pub, "f/p", map[string]chan msg{"healthy": healthy.msgs, "frozen": frozen.msgs})

	const pubs, each = 5, 20
	var cls []*v5
	for p := range pubs {
		// Connected first: a CONNECT needs the client-id registry, which
		// waits for a new leader when the frozen core led it.
		cls = append(cls, dialV5(t, c0.MQTT(), "p"+strconv.Itoa(p)))
	}
	c2.Signal(clustertest.Freeze)
	t.Cleanup(func() { c2.Signal(clustertest.Thaw) })
	type result struct {
		failed int
		err    error
	}
	res := make(chan result, pubs)
	for p, cl := range cls {
		go func() {
			var r result
			for i := range each {
				for try := 0; ; try++ {
					start := time.Now()
					pr, err := cl.pub("f/q", 1, strconv.Itoa(p)+"-"+strconv.Itoa(i))
					if d := time.Since(start); d > 8*time.Second {
						r.err = fmt.Errorf("publish %d-%d completed after %v: at ack_timeout, not when the frozen node was seen gone", p, i, d)
					}
					if err == nil {
						break
					}
					if pr == nil || pr.ReasonCode != 0x80 || try == 2 {
						r.err = fmt.Errorf("publish %d-%d, try %d: %+v %v", p, i, try, pr, err)
						res <- r
						return
					}
					r.failed++
				}
			}
			res <- r
		}()
	}
	// QoS 0 meanwhile, 1 KiB each: the frozen node's share stays bounded,
	// and the healthy node gets every one.
	payload := strings.Repeat("z", 1024)
	for range 500 {
		if _, err := pub.pub("f/z", 0, payload); err != nil {
			t.Fatal(err)
		}
	}
	pub.pub("f/z", 0, "z-end")
	early := recvUntil(t, "healthy", healthy.msgs, "z-end")
	if got := only(early, "f/z"); len(got) != 500 {
		t.Errorf("healthy node got %d of 500 QoS 0 messages while another was frozen", len(got))
	}
	failed := 0
	for range pubs {
		select {
		case r := <-res:
			if r.err != nil {
				t.Error(r.err)
			}
			failed += r.failed
		case <-time.After(2 * waitTimeout):
			t.Fatal("publishers hang while a node is frozen")
		}
	}
	if failed == 0 {
		t.Error("no QoS 1 publish waiting for the frozen node failed (0x80)")
	}
	pub.pub("f/q", 1, "q-end")
	if got := distinct(only(append(early, recvUntil(t, "healthy", healthy.msgs, "q-end")...), "f/q")); got != pubs*each {
		t.Errorf("healthy node got %d of %d QoS 1 messages", got, pubs*each)
	}
}
