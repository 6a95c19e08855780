package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testcert"
	"github.com/eclipse/paho.golang/paho"
)

// TestLinkHandshake: a link opens only between ends that both prove
// cluster.secret, in the same cluster, to the run the dialer meant; a
// peer that proves nothing is never read.
func TestLinkHandshake(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	addr := b.r.links.addr
	if strings.HasPrefix(addr, ":") {
		t.Fatalf("link address %q: the test nodes listen on 127.0.0.1", addr)
	}
	dialer := func(secret, cluster string) *links {
		return &links{r: a.r, secret: []byte(secret), cluster: cluster}
	}
	if c, _, err := dialer("s", "culex").dial("n1", b.r.epoch, addr, 5*time.Second); err != nil {
		t.Fatalf("the right secret: %v", err)
	} else {
		c.Close()
	}
	for _, tc := range []struct{ name, secret, cluster, node string }{
		{"wrong secret", "not-s", "culex", "n1"},
		{"other cluster", "s", "other", "n1"},
		{"other node", "s", "culex", "n7"},
	} {
		if _, _, err := dialer(tc.secret, tc.cluster).dial(tc.node, b.r.epoch, addr, 5*time.Second); err == nil {
			t.Errorf("%s: link opened", tc.name)
		}
	}
	if _, _, err := dialer("s", "culex").dial("n1", b.r.epoch+2, addr, 5*time.Second); err == nil {
		t.Error("a link to another run of n1 opened")
	}

	// A listener that does not know the secret is not told it: the
	// dialer stops before proving it.
	fake, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	fl := &links{r: b.r, secret: []byte("guess"), cluster: "culex"}
	proved := make(chan bool, 1)
	go func() {
		c, err := fake.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		_, err = fl.accepted(c, br)
		proved <- err == nil
	}()
	if _, _, err := a.r.links.dial("n1", b.r.epoch, fake.Addr().String(), 5*time.Second); err == nil {
		t.Error("dialed a listener that did not prove the secret")
	}
	if <-proved {
		t.Error("the dialer proved the secret to a listener that did not")
	}

	// Garbage, and a peer that stops mid-handshake, are dropped unread.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 64)); err == nil {
		t.Errorf("the link port answered %d bytes to HTTP", n)
	}
	c.Close()
	before := b.r.received.Load()
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append([]byte(linkMagic), appendString(appendString(nil, "culex"), "n0")...))
	c.SetReadDeadline(time.Now().Add(linkHandshakeTimeout + 5*time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		// the listener's half; it then waits for a proof that never comes
		for {
			if _, err := c.Read(make([]byte, 256)); err != nil {
				break
			}
		}
	}
	if b.r.received.Load() != before {
		t.Error("a peer that proved nothing had messages injected")
	}
}

// TestLinkRedials: when a link breaks, the next forwarded message dials
// it again, and QoS 1 publishes go on being acknowledged.
func TestLinkRedials(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	sub := dialPaho(t, b.addr, "sub")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subscribeSeen(t, sub, a, "n1", "r/#")
	pub := dialPaho(t, a.addr, "pub")
	publish := func(topic string) {
		t.Helper()
		pr, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
		if err != nil || pr.ReasonCode != 0 {
			t.Fatalf("publish %s: %+v %v", topic, pr, err)
		}
	}
	publish("r/1")
	rt := a.routeTo(t, "n1")
	if st, _ := rt.linkState(); st != "up" {
		t.Fatalf("link %s after a forwarded message", st)
	}
	// n1 closes every link it accepted.
	b.r.links.mu.Lock()
	for c := range b.r.links.in {
		c.Close()
	}
	b.r.links.mu.Unlock()
	eventually(t, "n0 to see its link closed", func() bool { st, _ := rt.linkState(); return st == "down" })
	publish("r/2")
	if st, fails := rt.linkState(); st != "up" || fails != 0 {
		t.Errorf("link %s with %d failed dials after a redial", st, fails)
	}
}

// TestLinkBacklogBounded: a node that routes forwarded messages slower
// than another forwards them on a link reads no faster than it routes,
// so the sender holds at most cluster.max_pending_bytes for it and drops
// (and counts) QoS 0 past it; once it catches up a later message
// arrives. Here the node stops routing altogether: its route holds the
// publisher for stallAfter at most (TestCongestedRouteHoldsPublishers),
// then drops.
func TestLinkBacklogBounded(t *testing.T) {
	const limit = 256 << 10
	ns := startNodesWith(t, 2, func(c *config.Cluster) { c.MaxPending = limit })
	a, b := ns[0], ns[1]
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "flood/#", 0)
	eventually(t, "n0 to learn flood/#", func() bool { _, ok := a.peerFilters("n1")["flood/#"]; return ok })
	unblock := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(release)
	hook := func() { <-unblock }
	b.r.testInject.Store(&hook)
	rt := a.routeTo(t, "n1")
	pub := dialRaw(t, a.addr, "pub")
	// Far more than the sockets between the nodes buffer.
	const n = 300000
	done := make(chan struct{})
	go func() {
		defer close(done)
		pub.publishN(t, "flood/x", 0, n, newWindow(n))
	}()
	most := 0
	eventually(t, "n0 to drop over the limit", func() bool {
		most = max(most, rt.pendingBytes())
		return rt.dropped.Load() > 0
	})
	<-done
	if most > limit {
		t.Errorf("n0 held %d bytes for n1, over max_pending_bytes %d", most, limit)
	}
	b.r.testInject.Store(nil)
	release()
	eventually(t, "n0 to send what it holds", func() bool { return rt.pendingBytes() == 0 })
	floodDropped(t, pub, sub, n)
}

// TestLinkMixed: a node with links off and one with them route to each
// other through NATS, both ways.
func TestLinkMixed(t *testing.T) {
	ns := startNodesWith(t, 2, func(c *config.Cluster) {
		if c.NodeName == "n1" {
			c.LinkListen = "off"
		}
	})
	crossQoS1(t, ns[0], ns[1])
	crossQoS1(t, ns[1], ns[0])
	if ns[0].routeTo(t, "n1").link != nil || ns[1].routeTo(t, "n0").link != nil {
		t.Error("a route to or from a node without links is on a link")
	}
}

// TestLinkTLS: with cluster.tls (and no secret) links run TLS verified
// against the cluster CA, and carry QoS 1 both ways.
func TestLinkTLS(t *testing.T) {
	ca := testcert.NewCA(t, "cluster CA")
	dir := t.TempDir()
	ns := startNodesWith(t, 2, func(c *config.Cluster) {
		c.Secret = ""
		c.TLS.CertFile, c.TLS.KeyFile = testcert.WriteFiles(t, dir, c.NodeName, ca.Node(t, c.NodeName))
		c.TLS.CAFile = ca.WriteFile(t, dir, "ca.pem")
	})
	crossQoS1(t, ns[0], ns[1])
	crossQoS1(t, ns[1], ns[0])
	for _, pair := range [][2]*node{{ns[0], ns[1]}, {ns[1], ns[0]}} {
		if st, _ := pair[0].routeTo(t, pair[1].r.node).linkState(); st != "up" {
			t.Errorf("%s's link to %s: %s", pair[0].r.node, pair[1].r.node, st)
		}
	}
	// A peer with a certificate from another CA is refused.
	other := testcert.NewCA(t, "other CA")
	cert := other.Node(t, "intruder")
	tc := ns[1].r.links.tls.Clone()
	tc.Certificates = []tls.Certificate{cert}
	l := &links{r: ns[0].r, tls: tc, cluster: "culex"}
	if _, _, err := l.dial("n1", ns[1].r.epoch, ns[1].r.links.addr, 5*time.Second); err == nil {
		t.Error("a link with a certificate from another CA opened")
	}
}

// crossQoS1 publishes a QoS 1 message on from for a subscriber on to and
// waits for both its PUBACK and its delivery.
func crossQoS1(t *testing.T, from, to *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 1)
	sub := dialPahoWith(t, to.addr, "sub-"+to.r.node, func(c *paho.ClientConfig) {
		c.OnPublishReceived = append(c.OnPublishReceived, func(pr paho.PublishReceived) (bool, error) {
			select {
			case got <- pr.Packet.Topic:
			default:
			}
			return true, nil
		})
	})
	topic := "x/" + from.r.node + "/" + to.r.node
	subscribeSeen(t, sub, from, to.r.node, topic)
	pub := dialPaho(t, from.addr, "pub-"+from.r.node)
	pr, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x")})
	if err != nil || pr.ReasonCode != 0 {
		t.Fatalf("publish %s: %+v %v", topic, pr, err)
	}
	select {
	case tp := <-got:
		if tp != topic {
			t.Errorf("got %s, want %s", tp, topic)
		}
	case <-ctx.Done():
		t.Fatalf("%s never delivered", topic)
	}
}

// TestLinksFromTwoNodes: two nodes forward QoS 1 messages to a third at
// once, each on its own link (each link's goroutine injects on its own:
// run with -race), and every message is acknowledged and delivered.
func TestLinksFromTwoNodes(t *testing.T) {
	const n = 2000
	ns := startNodes(t, 3)
	sub := dialRaw(t, ns[2].addr, "sub")
	sub.subscribe(t, "two/#", 0) // delivered at QoS 0: the raw client sends no PUBACK
	for _, p := range ns[:2] {
		eventually(t, p.r.node+" to learn two/#", func() bool { _, ok := p.peerFilters("n2")["two/#"]; return ok })
	}
	got := make(chan int, 1)
	go func() {
		sub.nc.SetReadDeadline(time.Now().Add(time.Minute))
		k := 0
		for k < 2*n {
			if _, err := sub.nextTopic(); err != nil {
				break
			}
			k++
		}
		got <- k
	}()
	errs := make(chan error, 2)
	for i, p := range ns[:2] {
		pub := dialRaw(t, p.addr, "pub"+p.r.node)
		go func() { errs <- pub.publishAcked("two/"+strconv.Itoa(i), n) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if k := <-got; k != 2*n {
		t.Errorf("%d of %d messages delivered", k, 2*n)
	}
	for _, p := range ns[:2] {
		if st, _ := p.routeTo(t, "n2").linkState(); st != "up" {
			t.Errorf("%s's link to n2: %s", p.r.node, st)
		}
	}
}

// TestLinkDownWaits: while a node's link cannot be dialed (and its
// heartbeats still come) a QoS 1 publish for its subscriber waits, as
// for a frozen node, and is acknowledged and delivered once the link is
// up again: not failed at once.
func TestLinkDownWaits(t *testing.T) {
	ns := startNodesWith(t, 2, func(c *config.Cluster) { c.AckTimeout = time.Minute })
	a, b := ns[0], ns[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 4)
	sub := dialPahoWith(t, b.addr, "sub", func(c *paho.ClientConfig) {
		c.OnPublishReceived = append(c.OnPublishReceived, func(pr paho.PublishReceived) (bool, error) {
			got <- string(pr.Packet.Payload)
			return true, nil
		})
	})
	subscribeSeen(t, sub, a, "n1", "w")
	refuse := func() error { return errors.New("refused by the test") }
	a.r.testDial.Store(&refuse)
	pub := dialPaho(t, a.addr, "pub")
	res := make(chan error, 1)
	go func() {
		pr, err := pub.Publish(ctx, &paho.Publish{Topic: "w", QoS: 1, Payload: []byte("x")})
		if err == nil && pr.ReasonCode != 0 {
			err = fmt.Errorf("PUBACK 0x%02x", pr.ReasonCode)
		}
		res <- err
	}()
	rt := a.routeTo(t, "n1")
	eventually(t, "a failed dial", func() bool { _, fails := rt.linkState(); return fails >= 2 })
	select {
	case err := <-res:
		t.Fatalf("the publish ended (%v) while the link was down and the node alive", err)
	default:
	}
	a.r.testDial.Store(nil)
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no PUBACK once the link could be dialed")
	}
	select {
	case p := <-got:
		if p != "x" {
			t.Errorf("got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
}

// TestInjectorGroupsBatches: the batches a link's injector finds queued
// together are routed as one group: their acknowledgements leave in one
// message, after every copy was queued in order; past maxGroupBytes a
// group ends and the next starts.
func TestInjectorGroupsBatches(t *testing.T) {
	b := startNodes(t, 1)[0]
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "g/#", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sender, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seq := uint64(0)
	batch := func(topics ...string) []byte {
		var out []byte
		for _, tp := range topics {
			payload := []byte("x")
			if strings.HasPrefix(tp, "g/big") {
				payload = make([]byte, maxGroupBytes/2+1)
			}
			seq++
			start := len(out)
			out = append(out, 0, 0, 0, 0)
			out = encodeMsg(out, &broker.Message{Topic: tp, QoS: 1, Payload: payload}, 1, seq, "n9", time.Now().UnixNano(), nil, onceID{})
			binary.LittleEndian.PutUint32(out[start:], uint32(len(out)-start-4))
		}
		return out
	}
	// Queued before the injector starts: three small batches, then three
	// batches of over half a group each.
	q := newLinkQueue(64 << 20)
	var topics []string
	for i := range 3 {
		ts := []string{fmt.Sprintf("g/%d/a", i), fmt.Sprintf("g/%d/b", i)}
		topics = append(topics, ts...)
		q.push(batch(ts...))
	}
	for i := range 3 {
		tp := fmt.Sprintf("g/big%d", i)
		topics = append(topics, tp)
		q.push(batch(tp))
	}
	src := &inbound{lk: &linkAcks{r: b.r, c: c, to: "n9"}}
	l := &links{r: b.r}
	go l.injectQueued(q, src)
	defer q.close()

	// The acknowledgement messages: sequences 1 to 8 (the small batches
	// and two big ones fill a group), then 9.
	sender.SetReadDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(sender)
	var buf []byte
	for i, want := range [][]uint64{{1, 2, 3, 4, 5, 6, 7, 8}, {9}} {
		body, err := readLinkMessage(br, &buf)
		if err != nil {
			t.Fatalf("acknowledgement message %d: %v", i+1, err)
		}
		rd := &reader{b: body}
		if from := rd.string(); from != b.r.node {
			t.Errorf("acknowledgements from %q", from)
		}
		var got []uint64
		for len(rd.b) > 0 {
			got = append(got, rd.uvarint())
			if code := rd.byte(); code != 0 {
				t.Errorf("seq %d acknowledged with %#x", got[len(got)-1], code)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("acknowledgement message %d: %v, want %v", i+1, got, want)
		}
	}
	sub.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	for _, want := range topics {
		if got, err := sub.nextTopic(); err != nil || got != want {
			t.Fatalf("delivered %q, %v; want %q", got, err, want)
		}
	}
}

// TestReaderGroupsBufferedBatches: batches that reach a link's reader
// together, with nothing queued for its injector, are routed by the
// reader as one group: one acknowledgement message for them all (and one
// write per subscriber), in order.
func TestReaderGroupsBufferedBatches(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "g/#", 0)
	dl := &links{r: a.r, secret: []byte("s"), cluster: "culex"}
	c, br, err := dl.dial("n1", b.r.epoch, b.r.links.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out, topics []string
	var wire []byte
	for i := range 3 {
		var body []byte
		for _, tp := range []string{fmt.Sprintf("g/%d/a", i), fmt.Sprintf("g/%d/b", i)} {
			start := len(body)
			body = append(body, 0, 0, 0, 0)
			body = encodeMsg(body, &broker.Message{Topic: tp, QoS: 1, Payload: []byte("x")}, 1, uint64(len(topics)+1), a.r.node, time.Now().UnixNano(), nil, onceID{})
			binary.LittleEndian.PutUint32(body[start:], uint32(len(body)-start-4))
			topics = append(topics, tp)
		}
		wire = binary.LittleEndian.AppendUint32(wire, uint32(len(body)))
		wire = append(wire, body...)
	}
	// One write of a few hundred bytes: one segment on loopback, read at
	// once.
	if _, err := c.Write(wire); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var buf []byte
	body, err := readLinkMessage(br, &buf)
	if err != nil {
		t.Fatal(err)
	}
	rd := &reader{b: body}
	rd.string()
	for len(rd.b) > 0 {
		out = append(out, strconv.FormatUint(rd.uvarint(), 10))
		rd.byte()
	}
	if got := strings.Join(out, " "); got != "1 2 3 4 5 6" {
		t.Errorf("first acknowledgement message: %s, want 1 to 6", got)
	}
	sub.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	for _, want := range topics {
		if got, err := sub.nextTopic(); err != nil || got != want {
			t.Fatalf("delivered %q, %v; want %q", got, err, want)
		}
	}
}

// TestCongestedRouteHoldsPublishers: a node that routes forwarded
// messages slower than a QoS 0 publisher on another node publishes them
// (but keeps routing) holds that publisher back through TCP instead of
// the route dropping: every message arrives, none is dropped, and the
// route never holds more than max_pending_bytes.
func TestCongestedRouteHoldsPublishers(t *testing.T) {
	const limit = 256 << 10
	ns := startNodesWith(t, 2, func(c *config.Cluster) {
		c.MaxPending, c.NodeTimeout = limit, 5*time.Second
	})
	a, b := ns[0], ns[1]
	// Under the race detector this slow node can leave a link write
	// waiting for over a second (the sockets hold megabytes of small
	// batches): not a node that stopped reading.
	a.r.testStallAfter.Store(int64(10 * time.Second))
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "flood/#", 0)
	eventually(t, "n0 to learn flood/#", func() bool { _, ok := a.peerFilters("n1")["flood/#"]; return ok })
	slow := func() { time.Sleep(100 * time.Microsecond) } // per batch: slower than the publisher, never stopped
	b.r.testInject.Store(&slow)
	rt := a.routeTo(t, "n1")
	stop := make(chan struct{})
	most := make(chan int)
	go func() {
		m := 0
		for {
			select {
			case <-stop:
				most <- m
				return
			default:
				m = max(m, rt.pendingBytes())
				runtime.Gosched()
			}
		}
	}()
	got := make(chan int, 1)
	go func() {
		sub.nc.SetReadDeadline(time.Now().Add(time.Minute))
		k := 0
		for {
			topic, err := sub.nextTopic()
			if err != nil || topic == "flood/marker" {
				break
			}
			k++
		}
		got <- k
	}()
	pub := dialRaw(t, a.addr, "pub")
	const n = 100000 // about 10 MB: forty times the route's bound
	pub.publishN(t, "flood/x", 0, n, newWindow(n))
	pub.publishN(t, "flood/marker", 0, 1, newWindow(1))
	k := <-got
	close(stop)
	if m := <-most; m > limit {
		t.Errorf("the route held %d bytes, over max_pending_bytes %d", m, limit)
	}
	if k != n || rt.dropped.Load() != 0 {
		t.Errorf("%d of %d messages delivered, %d dropped at the route; forwarded %d received %d drops %v", k, n, rt.dropped.Load(), a.r.forwarded.Load(), b.r.received.Load(), b.r.b.Stats().Drops)
	}
}
