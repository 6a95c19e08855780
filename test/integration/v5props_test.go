package integration

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
)

// TestTopicAliasInbound proves a PUBLISH may set a Topic Alias with its
// topic and later use the alias alone [MQTT-3.3.2-12], and that an alias
// above the broker's Topic Alias Maximum is a DISCONNECT 0x94
// [MQTT-3.3.2-10].
func TestTopicAliasInbound(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxTopicAlias = 4 })
	addr := tcpAddr(t, srv)
	s := connectV5(t, addr, v5Connect("s", true, 0))
	s.subscribe(sub("ta/#", 1))

	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("ta/one", 1, "first", withProps(&paho.PublishProperties{TopicAlias: paho.Uint16(2)}))
	p.publish("", 1, "by alias", withProps(&paho.PublishProperties{TopicAlias: paho.Uint16(2)}))
	p.publish("ta/two", 0, "remap", withProps(&paho.PublishProperties{TopicAlias: paho.Uint16(2)}))
	p.publish("", 1, "by new alias", withProps(&paho.PublishProperties{TopicAlias: paho.Uint16(2)}))
	want := []string{"ta/one first", "ta/one by alias", "ta/two remap", "ta/two by new alias"}
	var got []string
	for _, m := range recvN(t, s.msgs, 4, waitTimeout) {
		got = append(got, m.Topic+" "+string(m.Payload))
		if m.Alias != 0 {
			t.Errorf("subscriber declared no Topic Alias Maximum but got alias %d [MQTT-3.3.2-9]", m.Alias)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	raw := dialRaw(t, addr, 5)
	raw.mustConnect(rawConnect("badalias", true))
	pp := &packet.Publish{Topic: "ta/x", QoS: 0, Payload: []byte("x")}
	pp.Props.TopicAlias = 5
	pp.Props.Set(packet.PropTopicAlias)
	raw.send(pp)
	raw.mustClose(waitTimeout, 0x94)

	// An empty topic with an alias that has no mapping is a Protocol Error.
	raw = dialRaw(t, addr, 5)
	raw.mustConnect(rawConnect("unmapped", true))
	pp = &packet.Publish{QoS: 0, Payload: []byte("x")}
	pp.Props.TopicAlias = 3
	pp.Props.Set(packet.PropTopicAlias)
	raw.send(pp)
	raw.mayClose(waitTimeout, 0x82)
}

// TestTopicAliasOutbound proves that when a client declares a Topic Alias
// Maximum the broker's aliases stay within it [MQTT-3.3.2-9], are remapped
// when more topics come than aliases, and resolve to the right topics (paho
// reports the raw alias; the test resolves it as the spec says a receiver
// must [MQTT-3.3.2-12]).
func TestTopicAliasOutbound(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	cp := v5Connect("aliased", true, 0)
	cp.Properties.TopicAliasMaximum = paho.Uint16(2)
	s := connectV5(t, addr, cp)
	s.subscribe(sub("out/#", 0))
	p := connectV5(t, addr, v5Connect("p", true, 0))
	var want []string
	for i := range 30 {
		topic := fmt.Sprintf("out/%s/%d", strings.Repeat("long-topic-", 4), i%4)
		payload := fmt.Sprint(i)
		p.publish(topic, 1, payload)
		want = append(want, topic+" "+payload)
	}
	var got []string
	for _, m := range recvN(t, s.msgs, len(want), waitTimeout) {
		got = append(got, m.Topic+" "+string(m.Payload))
	}
	if !slices.Equal(got, want) {
		t.Errorf("resolved topics differ:\n got %q\nwant %q", got, want)
	}
	if bad := s.aliasBad.Load(); bad > 0 {
		t.Errorf("%d PUBLISHes used an alias outside 1..2 or with no mapping", bad)
	}
	// With both aliases taken, a new topic replaces the least recently used
	// one (sent with its name), so every delivery carries an alias.
	if n := s.aliasReceived.Load(); n != int64(len(want)) {
		t.Errorf("%d of %d deliveries carried a topic alias, want all", n, len(want))
	}
}

// TestMessageExpiry proves a message whose expiry passes while queued for
// an offline session is not delivered [MQTT-3.3.2-5], and one still alive is
// delivered with its remaining interval [MQTT-3.3.2-6]; a retained message
// expires the same way.
func TestMessageExpiry(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	c := connectV5(t, addr, v5Connect("exp", false, 300))
	c.subscribe(sub("exp/+", 1))
	c.disconnect(0, nil)
	// Publish only once the broker has seen the disconnect: a message already
	// sent to the closing connection counts as delivery started and may be
	// resent after its expiry [MQTT-3.3.2-5].
	waitClients(t, srv, 0)

	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("exp/short", 1, "short", withProps(&paho.PublishProperties{MessageExpiry: paho.Uint32(1)}))
	p.publish("exp/long", 1, "long", withProps(&paho.PublishProperties{MessageExpiry: paho.Uint32(60)}))
	p.publish("exp/none", 1, "none")
	p.publish("exp/ret", 1, "retained short", retained, withProps(&paho.PublishProperties{MessageExpiry: paho.Uint32(1)}))
	published := time.Now()
	waitFor(t, 5*time.Second, "the 1 s message expiry to pass", func() bool { return time.Since(published) > 2100*time.Millisecond })

	c = connectV5(t, addr, v5Connect("exp", false, 300))
	got := recvN(t, c.msgs, 2, waitTimeout)
	if got[0].Topic != "exp/long" || got[1].Topic != "exp/none" {
		t.Fatalf("after expiry got %v, want exp/long then exp/none", summarize(got))
	}
	if pp := got[0].Props; pp == nil || pp.MessageExpiry == nil {
		t.Errorf("exp/long lost its Message Expiry Interval")
	} else if *pp.MessageExpiry > 58 || *pp.MessageExpiry == 0 {
		t.Errorf("exp/long carried expiry %d, want 1..58 after >2 s queued", *pp.MessageExpiry)
	}
	if pp := got[1].Props; pp != nil && pp.MessageExpiry != nil {
		t.Errorf("exp/none gained a Message Expiry Interval %d", *pp.MessageExpiry)
	}

	late := connectV5(t, addr, v5Connect("late", true, 0))
	late.subscribe(sub("exp/ret", 1), sub("exp/marker", 0))
	p.publish("exp/marker", 0, "m")
	if ms := recvUntil(t, late.msgs, "exp/marker"); len(ms) > 0 {
		t.Errorf("expired retained message delivered: %v", summarize(ms))
	}
}

// TestPropertiesPassThrough proves Response Topic, Correlation Data, User
// Properties (order and duplicates kept [MQTT-3.3.2-18]), Content Type and
// Payload Format Indicator reach subscribers unchanged [MQTT-3.3.2-4,
// -15, -16, -17, -20], and that a request/response exchange works with them.
func TestPropertiesPassThrough(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	responder := connectV5(t, addr, v5Connect("responder", true, 0))
	responder.subscribe(sub("svc/req", 1))
	requester := connectV5(t, addr, v5Connect("requester", true, 0))
	requester.subscribe(sub("svc/resp/requester", 1))

	corr := []byte{0, 1, 2, 0xff, 0xfe}
	user := paho.UserProperties{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}, {Key: "a", Value: "3"}, {Key: "ünï", Value: ""}}
	requester.publish("svc/req", 1, `{"q":1}`, withProps(&paho.PublishProperties{
		ResponseTopic:   "svc/resp/requester",
		CorrelationData: corr,
		User:            user,
		ContentType:     "application/json",
		PayloadFormat:   paho.Byte(1),
	}))
	req := recv1(t, responder.msgs)
	pp := req.Props
	if pp == nil {
		t.Fatal("request arrived without properties")
	}
	if pp.ResponseTopic != "svc/resp/requester" {
		t.Errorf("Response Topic = %q", pp.ResponseTopic)
	}
	if !bytes.Equal(pp.CorrelationData, corr) {
		t.Errorf("Correlation Data = %x, want %x", pp.CorrelationData, corr)
	}
	if !slices.Equal(pp.User, user) {
		t.Errorf("User Properties = %v, want %v", pp.User, user)
	}
	if pp.ContentType != "application/json" {
		t.Errorf("Content Type = %q", pp.ContentType)
	}
	if pp.PayloadFormat == nil || *pp.PayloadFormat != 1 {
		t.Errorf("Payload Format Indicator = %v, want 1", deref(pp.PayloadFormat))
	}

	responder.publish(pp.ResponseTopic, 1, "answer", withProps(&paho.PublishProperties{CorrelationData: pp.CorrelationData}))
	resp := recv1(t, requester.msgs)
	if string(resp.Payload) != "answer" || resp.Props == nil || !bytes.Equal(resp.Props.CorrelationData, corr) {
		t.Errorf("response %v with properties %+v", resp, resp.Props)
	}
}

// TestNoLocal proves a No Local subscription does not receive the client's
// own publications [MQTT-3.8.3-3] but does receive other clients'.
func TestNoLocal(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	c := connectV5(t, addr, v5Connect("self", true, 0))
	c.subscribe(paho.SubscribeOptions{Topic: "nl/#", QoS: 1, NoLocal: true})
	other := connectV5(t, addr, v5Connect("other", true, 0))
	c.publish("nl/a", 1, "mine")
	other.publish("nl/a", 1, "theirs")
	m := recv1(t, c.msgs)
	if string(m.Payload) != "theirs" {
		t.Errorf("No Local subscriber received %v first, want only \"theirs\"", m)
	}
	other.publish("nl/end", 1, "end")
	if extra := recvUntil(t, c.msgs, "nl/end"); len(extra) > 0 {
		t.Errorf("No Local subscriber received %v", summarize(extra))
	}
}

// TestReceiveMaximumOutbound proves the broker never has more unacknowledged
// QoS 1 PUBLISHes outstanding than the client's Receive Maximum
// [MQTT-3.3.4-9], and sends more as acknowledgements arrive.
func TestReceiveMaximumOutbound(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	raw := dialRaw(t, addr, 5)
	cp := rawConnect("rm", true)
	cp.Props.ReceiveMaximum = 2
	cp.Props.Set(packet.PropReceiveMaximum)
	raw.mustConnect(cp)
	raw.subscribe(1, subID(0), rawSub("rm", 1))

	p := connectV5(t, addr, v5Connect("p", true, 0))
	for i := range 6 {
		p.publish("rm", 1, fmt.Sprint(i))
	}
	first := raw.publishes(2)
	p.publish("rm", 0, markerPayload) // QoS 0 passes the window; a third QoS 1 would exceed Receive Maximum 2
	raw.expectMarker("rm")
	var got []string
	for _, pb := range first {
		got = append(got, string(pb.Payload))
	}
	for len(got) < 6 {
		raw.send(&packet.Ack{Kind: packet.PUBACK, PacketID: first[0].PacketID})
		first = first[1:]
		next := raw.publishes(1)[0]
		got = append(got, string(next.Payload))
		first = append(first, next)
	}
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4", "5"}) {
		t.Errorf("delivered %v", got)
	}
}

// TestReceiveMaximumInbound proves a v5 client sending more unacknowledged
// QoS 2 PUBLISHes than the broker's Receive Maximum gets DISCONNECT 0x93
// [MQTT-3.3.4-7].
func TestReceiveMaximumInbound(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.ReceiveMaximum = 3 })
	raw := dialRaw(t, tcpAddr(t, srv), 5)
	if ca := raw.mustConnect(rawConnect("flood", true)); ca.Props.ReceiveMaximum != 3 {
		t.Errorf("CONNACK Receive Maximum = %d, want 3", ca.Props.ReceiveMaximum)
	}
	// QoS 2 stays unacknowledged until PUBREL, which we never send.
	for id := uint16(1); id <= 4; id++ {
		raw.send(&packet.Publish{Topic: "flood", QoS: 2, PacketID: id, Payload: []byte("x")})
	}
	raw.mustClose(waitTimeout, 0x93)
}

// TestMaximumPacketSizeOutbound proves the broker never sends a packet
// larger than the client's Maximum Packet Size; it drops such a message for
// that client [MQTT-3.1.2-24, -25] and keeps delivering smaller ones.
func TestMaximumPacketSizeOutbound(t *testing.T) {
	t.Parallel()
	const max = 128
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	raw := dialRaw(t, addr, 5)
	cp := rawConnect("small", true)
	cp.Props.MaximumPacketSize = max
	cp.Props.Set(packet.PropMaximumPacketSize)
	raw.mustConnect(cp)
	raw.subscribe(1, subID(0), rawSub("mps/#", 0))

	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("mps/a", 1, strings.Repeat("s", 20))
	p.publish("mps/a", 1, strings.Repeat("L", 500))
	p.publish("mps/a", 1, strings.Repeat("s", 21), withProps(&paho.PublishProperties{
		User: paho.UserProperties{{Key: "pad", Value: strings.Repeat("p", 200)}}, // too big only through properties
	}))
	p.publish("mps/end", 1, "end")
	var sizes []int
	for {
		pkt, size, err := raw.readPacket(waitTimeout)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		sizes = append(sizes, size)
		if size > max {
			t.Errorf("broker sent a %d-byte %v to a client with Maximum Packet Size %d", size, pkt.Type(), max)
		}
		pb, ok := pkt.(*packet.Publish)
		if !ok {
			continue
		}
		if pb.Topic == "mps/end" {
			break
		}
		if len(pb.Payload) != 20 {
			t.Errorf("unexpected delivery of %d-byte payload", len(pb.Payload))
		}
	}
	t.Logf("packet sizes: %v", sizes)
}

// TestMaximumPacketSizeInbound proves a client sending a packet larger than
// the broker's Maximum Packet Size gets DISCONNECT 0x95 [MQTT-3.2.2-15 /
// 4.13] and is closed.
func TestMaximumPacketSizeInbound(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxPacketSize = 1024 })
	raw := dialRaw(t, tcpAddr(t, srv), 5)
	raw.mustConnect(rawConnect("big", true))
	raw.send(&packet.Publish{Topic: "big", QoS: 0, Payload: bytes.Repeat([]byte("x"), 2048)})
	raw.mustClose(waitTimeout, 0x95)
}

// TestMaximumPacketSizeRetainedAndWill proves the client's Maximum Packet
// Size also bounds retained messages sent on subscribe and will messages
// [MQTT-3.1.2-24]: too-large ones are skipped, smaller ones still arrive.
func TestMaximumPacketSizeRetainedAndWill(t *testing.T) {
	t.Parallel()
	const max = 128
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("mr/big", 1, strings.Repeat("B", 500), retained)
	p.publish("mr/small", 1, "s", retained)

	raw := dialRaw(t, addr, 5)
	cp := rawConnect("small", true)
	cp.Props.MaximumPacketSize = max
	cp.Props.Set(packet.PropMaximumPacketSize)
	raw.mustConnect(cp)
	raw.subscribe(1, subID(0), rawSub("mr/#", 0))

	w := willConnect("w", 0, 0)
	w.WillMessage.Topic, w.WillMessage.Payload = "mr/will", []byte(strings.Repeat("W", 500))
	connectV5(t, addr, w).kill()
	p.publish("mr/end", 0, "end")
	for {
		pkt, size, err := raw.readPacket(waitTimeout)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if size > max {
			t.Errorf("broker sent a %d-byte %v to a client with Maximum Packet Size %d", size, pkt.Type(), max)
		}
		if pb, ok := pkt.(*packet.Publish); ok && pb.Topic == "mr/end" {
			break
		}
	}
}

// TestTopicAliasesOutboundResetOnReconnect proves the broker does not carry
// its outbound topic aliases into a new connection of the same session
// [MQTT-3.3.2-7]: after a reconnect, queued and live messages arrive with
// a topic name wherever an alias is first used.
func TestTopicAliasesOutboundResetOnReconnect(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	cp := func(clean bool) *paho.Connect {
		c := v5Connect("aliased", clean, 300)
		c.Properties.TopicAliasMaximum = paho.Uint16(5)
		return c
	}
	s := connectV5(t, addr, cp(true))
	s.subscribe(sub("rst/#", 1))
	p := connectV5(t, addr, v5Connect("p", true, 0))
	topics := []string{"rst/a/long/topic/name", "rst/b/long/topic/name"}
	for i := range 6 {
		p.publish(topics[i%2], 1, fmt.Sprint("first ", i))
	}
	recvN(t, s.msgs, 6, waitTimeout)
	s.disconnect(0, nil)
	waitClients(t, srv, 1)
	for i := range 4 {
		p.publish(topics[i%2], 1, fmt.Sprint("queued ", i))
	}
	s = connectV5(t, addr, cp(false))
	for i := range 4 {
		p.publish(topics[i%2], 1, fmt.Sprint("live ", i))
	}
	for _, m := range recvN(t, s.msgs, 8, waitTimeout) {
		if m.Topic == "" {
			t.Errorf("after reconnect, %q arrived by a topic alias (%d) never set on this connection", m.Payload, m.Alias)
		}
	}
	if bad := s.aliasBad.Load(); bad > 0 {
		t.Errorf("%d PUBLISHes used an unknown or out-of-range alias after reconnect", bad)
	}
}

// TestTopicAliasWithRetainAndV3Subscribers proves a message published by
// topic alias alone is stored as retained under its real topic and reaches
// 3.1.1 subscribers with the topic name.
func TestTopicAliasWithRetainAndV3Subscribers(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	v3 := connectV3(t, srv.URL("tcp"), "v3", true)
	v3.subscribe("tar/#", 1)
	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("tar/x", 1, "set", withProps(&paho.PublishProperties{TopicAlias: paho.Uint16(1)}))
	p.publish("", 1, "by alias", retained, withProps(&paho.PublishProperties{TopicAlias: paho.Uint16(1)}))
	for _, want := range []string{"set", "by alias"} {
		if m := recv1(t, v3.msgs); m.Topic != "tar/x" || string(m.Payload) != want {
			t.Errorf("v3 subscriber got %v, want tar/x %q", m, want)
		}
	}
	late := connectV5(t, addr, v5Connect("late", true, 0))
	late.subscribe(sub("tar/#", 1))
	if m := recv1(t, late.msgs); m.Topic != "tar/x" || string(m.Payload) != "by alias" || !m.Retain {
		t.Errorf("retained message published by alias: got %v, want retained tar/x \"by alias\"", m)
	}
}
