package integration

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestConnectV311AndV5 proves both protocol versions connect on the TCP
// listener and exchange a message, and that a v5 CONNACK advertises the
// configured limits [MQTT-3.2.2.3].
func TestConnectV311AndV5(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.MQTT.ReceiveMaximum = 100
		c.MQTT.MaxTopicAlias = 7
		c.MQTT.MaxPacketSize = 64 << 10
		c.MQTT.MaxKeepAlive = 20
	})
	addr := tcpAddr(t, srv)
	v5 := connectV5(t, addr, &paho.Connect{ClientID: "v5", CleanStart: true, KeepAlive: 60})
	// A 3.1.1 client cannot be told a keep-alive cap, so it asks within it.
	v3 := connectV3(t, srv.URL("tcp"), "v3", true, func(o *mqtt.ClientOptions) { o.SetKeepAlive(10 * time.Second) })

	p := v5.connack.Properties
	if p == nil {
		t.Fatal("v5 CONNACK has no properties")
	}
	if p.ReceiveMaximum == nil || *p.ReceiveMaximum != 100 {
		t.Errorf("CONNACK Receive Maximum = %v, want 100", deref(p.ReceiveMaximum))
	}
	if p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 7 {
		t.Errorf("CONNACK Topic Alias Maximum = %v, want 7", deref(p.TopicAliasMaximum))
	}
	if p.MaximumPacketSize == nil || *p.MaximumPacketSize != 64<<10 {
		t.Errorf("CONNACK Maximum Packet Size = %v, want %d", deref(p.MaximumPacketSize), 64<<10)
	}
	// [MQTT-3.2.2-21]: a capped keep-alive is announced in Server Keep Alive.
	if p.ServerKeepAlive == nil || *p.ServerKeepAlive != 20 {
		t.Errorf("CONNACK Server Keep Alive = %v, want 20 (client asked 60, cap 20)", deref(p.ServerKeepAlive))
	}

	v5.subscribe(sub("hello/v5", 1))
	v3.subscribe("hello/v3", 1)
	v3.publish("hello/v5", 1, false, "from v3")
	v5.publish("hello/v3", 1, "from v5")
	if m := recv1(t, v5.msgs); string(m.Payload) != "from v3" {
		t.Errorf("v5 got %v", m)
	}
	if m := recv1(t, v3.msgs); string(m.Payload) != "from v5" {
		t.Errorf("v3 got %v", m)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "absent"
	}
	return *p
}

// TestAssignedClientIdentifier proves a v5 client with an empty client id is
// given one in CONNACK [MQTT-3.2.2-16] and a v3.1.1 clean client is accepted
// with an empty id [MQTT-3.1.3-6].
func TestAssignedClientIdentifier(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	c := connectV5(t, tcpAddr(t, srv), &paho.Connect{CleanStart: true, KeepAlive: 30})
	if c.connack.Properties == nil || c.connack.Properties.AssignedClientID == "" {
		t.Errorf("CONNACK without Assigned Client Identifier for an empty client id")
	}
	connectV3(t, srv.URL("tcp"), "", true)
}

// TestQoSMatrixBothWays proves every publish QoS x subscription QoS pair is
// delivered once at min(publish, granted) [MQTT-3.8.4-8], from v3.1.1 to v5
// and from v5 to v3.1.1.
func TestQoSMatrixBothWays(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	v5 := connectV5(t, addr, v5Connect("m5", true, 0))
	v3 := connectV3(t, srv.URL("tcp"), "m3", true)
	for sq := byte(0); sq <= 2; sq++ {
		v5.subscribe(sub(fmt.Sprintf("to5/s%d", sq), sq))
		v3.subscribe(fmt.Sprintf("to3/s%d", sq), sq)
	}
	for pq := byte(0); pq <= 2; pq++ {
		for sq := byte(0); sq <= 2; sq++ {
			want := min(pq, sq)
			payload := fmt.Sprintf("p%d-s%d", pq, sq)

			v3.publish(fmt.Sprintf("to5/s%d", sq), pq, false, payload)
			m := recv1(t, v5.msgs)
			if string(m.Payload) != payload || m.QoS != want {
				t.Errorf("v3->v5 pub qos %d sub qos %d: got %v, want %q at qos %d", pq, sq, m, payload, want)
			}

			v5.publish(fmt.Sprintf("to3/s%d", sq), pq, payload)
			m = recv1(t, v3.msgs)
			if string(m.Payload) != payload || m.QoS != want {
				t.Errorf("v5->v3 pub qos %d sub qos %d: got %v, want %q at qos %d", pq, sq, m, payload, want)
			}
		}
	}
	// Exactly once each: a marker after everything finds nothing extra.
	v5.subscribe(sub("marker", 0))
	v3.subscribe("marker", 0)
	v5.publish("marker", 0, "m")
	if extra := recvUntil(t, v5.msgs, "marker"); len(extra) > 0 {
		t.Errorf("v5 received extra copies: %v", summarize(extra))
	}
	if extra := recvUntil(t, v3.msgs, "marker"); len(extra) > 0 {
		t.Errorf("v3 received extra copies: %v", summarize(extra))
	}
}

// TestOrderingWithinQoS1Stream proves 1000 QoS 1 messages from one publisher
// on one topic arrive in publish order [MQTT-4.6.0-5], v3.1.1 -> v5 and
// v5 -> v3.1.1.
func TestOrderingWithinQoS1Stream(t *testing.T) {
	t.Parallel()
	const n = 1000
	srv := startBroker(t)
	v5 := connectV5(t, tcpAddr(t, srv), v5Connect("o5", true, 0))
	v3 := connectV3(t, srv.URL("tcp"), "o3", true)
	v5.subscribe(sub("order/5", 1))
	v3.subscribe("order/3", 1)

	// v3 publishes asynchronously so many messages are in flight at once.
	toks := make([]mqtt.Token, n)
	for i := range n {
		toks[i] = v3.Publish("order/5", 1, false, strconv.Itoa(i))
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			t.Fatalf("v3 publish %d: %v", i, tok.Error())
		}
	}
	checkOrder(t, "v3->v5", recvN(t, v5.msgs, n, 30*time.Second))

	// Order is per publisher connection: one goroutine publishes in sequence.
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := v5.Publish(t.Context(), &paho.Publish{Topic: "order/3", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
				errc <- fmt.Errorf("v5 publish %d: %w", i, err)
				return
			}
		}
		errc <- nil
	}()
	checkOrder(t, "v5->v3", recvN(t, v3.msgs, n, 30*time.Second))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func checkOrder(t *testing.T, what string, ms []msg) {
	t.Helper()
	for i, m := range ms {
		if string(m.Payload) != strconv.Itoa(i) {
			t.Fatalf("%s: message %d has payload %q (out of order or lost); dup=%v", what, i, m.Payload, m.Dup)
		}
	}
}

// TestOverlappingSubscriptionsDeliverOneCopy proves a client whose
// subscriptions overlap receives one copy at the highest granted QoS
// [MQTT-3.3.4-2] carrying every matching Subscription Identifier
// [MQTT-3.3.4-3], and that a v3.1.1 client gets one copy too (3.1.1 allows
// more [MQTT-3.3.5-1]; Culex sends one). Both are checked on the wire: paho
// v5 keeps one subscription identifier and paho v3 fans one PUBLISH out to
// every matching handler.
func TestOverlappingSubscriptionsDeliverOneCopy(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))

	raw := dialRaw(t, addr, 5)
	raw.mustConnect(rawConnect("raw", true))
	raw.subscribe(1, subID(11), rawSub("ov/#", 1))
	raw.subscribe(2, subID(22), rawSub("ov/+", 0))
	raw.subscribe(3, subID(0), rawSub("marker", 0))

	// Raw 3.1.1 too: Paho v3 calls every matching handler for one PUBLISH,
	// which would hide how many copies the broker sent.
	raw3 := dialRaw(t, addr, packet.V311)
	raw3.mustConnect(rawConnect("raw3", true))
	raw3.subscribe(1, packet.Properties{}, rawSub("ov/#", 0))
	raw3.subscribe(2, packet.Properties{}, rawSub("ov/+", 1))
	raw3.subscribe(3, packet.Properties{}, rawSub("marker", 0))

	pub.publish("ov/a", 1, "once")
	pub.publish("marker", 0, "m")

	p := expect[*packet.Publish](raw)
	if p.Topic != "ov/a" || p.QoS != 1 {
		t.Errorf("v5 got %s qos %d, want ov/a qos 1", p.Topic, p.QoS)
	}
	ids := slices.Sorted(slices.Values(p.Props.SubscriptionIDs))
	if !slices.Equal(ids, []uint32{11, 22}) {
		t.Errorf("v5 subscription identifiers = %v, want [11 22]", p.Props.SubscriptionIDs)
	}
	raw.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	if next := expect[*packet.Publish](raw); next.Topic != "marker" {
		t.Errorf("v5 got a second copy: %s %q", next.Topic, next.Payload)
	}

	p = expect[*packet.Publish](raw3)
	if p.Topic != "ov/a" || p.QoS != 1 {
		t.Errorf("v3.1.1 got %s qos %d, want ov/a qos 1", p.Topic, p.QoS)
	}
	raw3.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	if next := expect[*packet.Publish](raw3); next.Topic != "marker" {
		t.Errorf("v3.1.1 got a second copy: %s %q", next.Topic, next.Payload)
	}
}

// TestWildcards proves + and # match per [MQTT-4.7.1] and nothing else,
// including that # matches the parent level [MQTT-4.7.1-2].
func TestWildcards(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	cases := []struct {
		filter string
		match  []string
		miss   []string
	}{
		{"sport/tennis/+", []string{"sport/tennis/player1", "sport/tennis/"}, []string{"sport/tennis", "sport/tennis/a/b"}},
		{"sport/#", []string{"sport", "sport/tennis", "sport/tennis/a/b"}, []string{"sports", "x/sport"}},
		{"+/+", []string{"a/b", "/finance", "a/"}, []string{"a", "a/b/c"}},
		{"/+", []string{"/finance"}, []string{"finance", "a/b"}},
		{"+", []string{"finance", ""}, []string{"/finance", "a/b"}},
		{"a/+/c/#", []string{"a/b/c", "a/x/c/d/e"}, []string{"a/b/d", "a/c"}},
		{"#", []string{"x", "x/y", "/"}, nil},
	}
	for i, tc := range cases {
		s := connectV5(t, addr, v5Connect(fmt.Sprintf("s%d", i), true, 0))
		s.subscribe(sub(tc.filter, 0), sub("zz/marker", 0))
		var want []string
		for _, topic := range append(slices.Clone(tc.match), tc.miss...) {
			if topic == "" {
				continue // empty topic names are invalid; skip as publish targets
			}
			pub.publish(topic, 1, topic)
			if slices.Contains(tc.match, topic) {
				want = append(want, topic)
			}
		}
		// The marker may match the filter too; overlapping subscriptions
		// deliver it once, and it ends the stream either way.
		pub.publish("zz/marker", 1, "end")
		got := payloads(recvUntil(t, s.msgs, "zz/marker"))
		if !slices.Equal(got, want) {
			t.Errorf("filter %q: got %q, want %q", tc.filter, got, want)
		}
	}
}

// TestSysTopicsNotMatchedByWildcard proves a '#' or '+/...' subscription
// does not match $SYS topics [MQTT-4.7.2-1] while '$SYS/#' does, and that
// $SYS statistics are published periodically.
func TestSysTopicsNotMatchedByWildcard(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, openSys)
	addr := tcpAddr(t, srv)
	all := connectV5(t, addr, v5Connect("all", true, 0))
	all.subscribe(sub("#", 0), sub("+/broker/#", 0))
	sys := connectV5(t, addr, v5Connect("sys", true, 0))
	sys.subscribe(sub("$SYS/#", 0))

	// Two rounds of the same $SYS topic prove it is periodic.
	seen := map[string]int{}
	deadline := time.After(waitTimeout)
	for periodic := false; !periodic; {
		select {
		case m := <-sys.msgs:
			if len(m.Topic) < 5 || m.Topic[:5] != "$SYS/" {
				t.Fatalf("$SYS/# delivered %q", m.Topic)
			}
			seen[m.Topic]++
			periodic = seen[m.Topic] >= 2
		case <-deadline:
			t.Fatalf("no $SYS topic published twice within %v; saw %v", waitTimeout, seen)
		}
	}
	t.Logf("$SYS topics seen: %d", len(seen))
	all.publish("ordinary", 0, "x")
	for _, m := range recvUntil(t, all.msgs, "ordinary") {
		t.Errorf("'#' matched %q", m.Topic)
	}
}

// TestUnsubscribeStopsDelivery proves UNSUBSCRIBE removes the subscription
// [MQTT-3.10.4-1] and a v5 UNSUBACK says 0x11 for a filter that had none.
func TestUnsubscribeStopsDelivery(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	c := connectV5(t, tcpAddr(t, srv), v5Connect("u", true, 0))
	c.subscribe(sub("u/a", 1), sub("u/marker", 0))
	c.publish("u/a", 1, "before")
	if m := recv1(t, c.msgs); string(m.Payload) != "before" {
		t.Fatalf("got %v", m)
	}
	ua, err := c.Unsubscribe(t.Context(), &paho.Unsubscribe{Topics: []string{"u/a", "u/never"}})
	if err != nil {
		t.Fatalf("unsubscribe: %v (unsuback %+v)", err, ua)
	}
	if ua == nil || !slices.Equal(ua.Reasons, []byte{0x00, 0x11}) {
		t.Errorf("UNSUBACK reasons = %v, want [0 0x11]", ua)
	}
	c.publish("u/a", 1, "after")
	c.publish("u/marker", 0, "m")
	if got := recvUntil(t, c.msgs, "u/marker"); len(got) > 0 {
		t.Errorf("received after unsubscribe: %v", summarize(got))
	}
}

// TestSysSuperuserOnlyByDefault proves that by default an anonymous client
// may not subscribe to $SYS (SUBACK 0x87 Not authorized).
func TestSysSuperuserOnlyByDefault(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.SysInterval = 100 * time.Millisecond })
	raw := dialRaw(t, tcpAddr(t, srv), packet.V5)
	raw.mustConnect(rawConnect("anon", true))
	if codes := raw.subscribe(1, subID(0), rawSub("$SYS/#", 0), rawSub("x", 0)); !slices.Equal(codes, []byte{0x87, 0x00}) {
		t.Errorf("SUBACK %x, want [87 00]", codes)
	}
}

// TestSysRetainedNotMatchedByWildcard proves that retained $SYS messages,
// if the broker keeps any, are not sent to a new '#' or '+/...'
// subscription [MQTT-4.7.2-1], only to '$SYS/#'.
func TestSysRetainedNotMatchedByWildcard(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, openSys)
	addr := tcpAddr(t, srv)
	sys := connectV5(t, addr, v5Connect("sys", true, 0))
	sys.subscribe(sub("$SYS/#", 0))
	recv1(t, sys.msgs) // $SYS is being published

	all := connectV5(t, addr, v5Connect("all", true, 0))
	all.subscribe(sub("#", 0), sub("+/+/#", 0))
	all.publish("marker", 0, "m")
	for _, m := range recvUntil(t, all.msgs, "marker") {
		t.Errorf("wildcard subscription got %q (retain %v)", m.Topic, m.Retain)
	}
}

// TestLargeMessages proves a message close to MaxPacketSize passes intact
// over TCP for v3.1.1 and v5 and over WebSocket, at QoS 1 and 2.
func TestLargeMessages(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	payload := bytes.Repeat([]byte("0123456789abcdef"), (1<<20-1024)/16)
	v5 := connectV5(t, addr, v5Connect("v5", true, 0))
	v5.subscribe(sub("big/#", 2))
	v3 := connectV3(t, srv.URL("tcp"), "v3", true)
	v3.subscribe("big/#", 1)
	ws := connectV3(t, srv.URL("ws"), "ws", true)
	ws.subscribe("big/#", 2)

	v5.publish("big/a", 2, string(payload))
	ws.publish("big/b", 1, false, string(payload))
	for name, ch := range map[string]<-chan msg{"v5": v5.msgs, "v3": v3.msgs, "ws": ws.msgs} {
		for _, m := range recvN(t, ch, 2, waitTimeout) {
			if !bytes.Equal(m.Payload, payload) {
				t.Errorf("%s: %s payload of %d bytes differs from the %d sent", name, m.Topic, len(m.Payload), len(payload))
			}
		}
	}
}

// TestUnicodeTopicsAndEmptyPayload proves UTF-8 topic names (multi-byte,
// spaces, empty levels) route exactly and an empty non-retained payload is
// delivered as such.
func TestUnicodeTopicsAndEmptyPayload(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	c := connectV5(t, addr, v5Connect("u", true, 0))
	topics := []string{"ü/ñ/日本", "with space/x", "a//b", strings.Repeat("l/", 20) + "end"}
	for _, tp := range topics {
		c.subscribe(sub(tp, 1))
	}
	c.subscribe(paho.SubscribeOptions{Topic: "+/+/日本", QoS: 1})
	for _, tp := range topics {
		c.publish(tp, 1, "")
		m := recv1(t, c.msgs)
		if m.Topic != tp || len(m.Payload) != 0 {
			t.Errorf("published empty payload to %q, got %v", tp, m)
		}
	}
	c.subscribe(sub("marker/#", 0))
	c.publish("marker/x", 0, "m")
	if extra := recvUntil(t, c.msgs, "marker/x"); len(extra) > 0 {
		t.Errorf("extra copies: %v", summarize(extra))
	}
}
