package integration

import (
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// persistentRaw dials a raw v5 connection for a persistent session.
func persistentRaw(t *testing.T, addr, id string, clean bool) (*rawConn, *packet.Connack) {
	t.Helper()
	raw := dialRaw(t, addr, packet.V5)
	cp := rawConnect(id, clean)
	cp.Props = sessionExpiry(300)
	return raw, raw.mustConnect(cp)
}

// TestQoS2OutboundResumesWithPubrel proves that when a subscriber has sent
// PUBREC but not received PUBREL before its connection dropped, the broker
// resends PUBREL, not the PUBLISH, on resumption [MQTT-4.4.0-1, 4.3.3].
func TestQoS2OutboundResumesWithPubrel(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))

	raw, _ := persistentRaw(t, addr, "q2sub", true)
	raw.subscribe(1, subID(0), rawSub("q2/out", 2))
	pub.publish("q2/out", 2, "exactly once")
	p := expect[*packet.Publish](raw)
	if p.QoS != 2 {
		t.Fatalf("got qos %d, want 2", p.QoS)
	}
	raw.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	rel := expect[*packet.Ack](raw)
	if rel.Kind != packet.PUBREL || rel.PacketID != p.PacketID {
		t.Fatalf("got %v %d, want PUBREL %d", rel.Kind, rel.PacketID, p.PacketID)
	}
	raw.Close() // before PUBCOMP
	waitClients(t, srv, 1)

	raw, ca := persistentRaw(t, addr, "q2sub", false)
	if !ca.SessionPresent {
		t.Fatalf("session not resumed")
	}
	got, _, err := raw.readPacket(waitTimeout)
	if err != nil {
		t.Fatalf("after resume: %v", err)
	}
	rel, ok := got.(*packet.Ack)
	if !ok || rel.Kind != packet.PUBREL || rel.PacketID != p.PacketID {
		t.Fatalf("after resume got %v %+v, want PUBREL %d only", got.Type(), got, p.PacketID)
	}
	raw.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	pub.publish("q2/out", 0, "next")
	if next := expect[*packet.Publish](raw); string(next.Payload) != "next" {
		t.Errorf("after PUBCOMP got %q, want \"next\" (the QoS 2 message again?)", next.Payload)
	}
}

// TestQoS2InboundAcrossReconnect proves an inbound QoS 2 message whose
// PUBREL comes on a new connection of the same session completes with
// PUBCOMP and is delivered exactly once [MQTT-4.3.3, 4.4.0-1].
func TestQoS2InboundAcrossReconnect(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	s := connectV5(t, addr, v5Connect("sub", true, 0))
	s.subscribe(sub("q2/in", 2), sub("q2/end", 0))

	raw, _ := persistentRaw(t, addr, "q2pub", true)
	raw.send(&packet.Publish{Topic: "q2/in", QoS: 2, PacketID: 9, Payload: []byte("once")})
	if rec := expect[*packet.Ack](raw); rec.Kind != packet.PUBREC {
		t.Fatalf("got %v, want PUBREC", rec.Kind)
	}
	raw.Close()
	waitClients(t, srv, 1)

	raw, ca := persistentRaw(t, addr, "q2pub", false)
	if !ca.SessionPresent {
		t.Fatalf("session not resumed")
	}
	// A resent PUBLISH with DUP must not deliver again.
	raw.send(&packet.Publish{Topic: "q2/in", QoS: 2, PacketID: 9, Dup: true, Payload: []byte("once")})
	if rec := expect[*packet.Ack](raw); rec.Kind != packet.PUBREC || rec.PacketID != 9 {
		t.Fatalf("resent PUBLISH: got %v %d, want PUBREC 9", rec.Kind, rec.PacketID)
	}
	raw.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 9})
	if comp := expect[*packet.Ack](raw); comp.Kind != packet.PUBCOMP || comp.PacketID != 9 || comp.ReasonCode != 0 {
		t.Fatalf("got %v %d reason 0x%02x, want PUBCOMP 9 success", comp.Kind, comp.PacketID, comp.ReasonCode)
	}
	raw.send(&packet.Publish{Topic: "q2/end", Payload: []byte("end")})
	if got := recvUntil(t, s.msgs, "q2/end"); len(got) != 1 || string(got[0].Payload) != "once" {
		t.Errorf("subscriber got %v, want exactly one \"once\"", summarize(got))
	}
}

// TestPubrelUnknownPacketID proves a PUBREL for a packet id with no QoS 2
// flow gets PUBCOMP 0x92 Packet Identifier not found (v5), and PUBCOMP in
// 3.1.1 [MQTT-4.3.3].
func TestPubrelUnknownPacketID(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	for _, v := range []packet.Version{packet.V5, packet.V311} {
		raw := dialRaw(t, addr, v)
		raw.mustConnect(rawConnect("rel"+v.String(), true))
		raw.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 77})
		comp := expect[*packet.Ack](raw)
		want := byte(0x92)
		if v != packet.V5 {
			want = 0
		}
		if comp.Kind != packet.PUBCOMP || comp.PacketID != 77 || comp.ReasonCode != want {
			t.Errorf("v%v: got %v %d reason 0x%02x, want PUBCOMP 77 reason 0x%02x", v, comp.Kind, comp.PacketID, comp.ReasonCode, want)
		}
	}
}

// TestNoRetainedForSharedSubscriptions proves retained messages are not
// sent when a shared subscription is made [MQTT-3.8.4 non-normative /
// 4.8.2: "retained messages are not sent to the session"].
func TestNoRetainedForSharedSubscriptions(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	pub.publish("shr/x", 1, "retained", retained)
	c := connectV5(t, addr, v5Connect("c", true, 0))
	c.subscribe(sub("$share/g/shr/x", 1), sub("shr/marker", 0))
	pub.publish("shr/marker", 0, "m")
	if got := recvUntil(t, c.msgs, "shr/marker"); len(got) > 0 {
		t.Errorf("shared subscription got retained messages: %v", summarize(got))
	}
}

// TestTopicAliasesResetOnReconnect proves inbound topic aliases do not
// survive the connection [MQTT-3.3.2-7]: using an alias set on a previous
// connection, without a topic, is a Protocol Error.
func TestTopicAliasesResetOnReconnect(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	aliased := func(topic string) *packet.Publish {
		p := &packet.Publish{Topic: topic, Payload: []byte("x")}
		p.Props.TopicAlias = 1
		p.Props.Set(packet.PropTopicAlias)
		return p
	}
	raw, _ := persistentRaw(t, addr, "alias", true)
	raw.send(aliased("al/x"))
	raw.send(aliased(""))
	raw.send(&packet.Pingreq{})
	expect[*packet.Pingresp](raw)
	raw.Close()
	waitClients(t, srv, 0)

	raw, _ = persistentRaw(t, addr, "alias", false)
	raw.send(aliased(""))
	raw.mayClose(waitTimeout, 0x82, 0x94)
}

// TestResubscribeReplacesOptions proves a SUBSCRIBE for an existing filter
// replaces its options [MQTT-3.8.4-3]: new QoS and new Subscription
// Identifier apply, and no second subscription appears.
func TestResubscribeReplacesOptions(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("re", true))
	raw.subscribe(1, subID(1), rawSub("re/x", 0))
	raw.subscribe(2, subID(2), rawSub("re/x", 1))
	pub.publish("re/x", 1, "one")
	pub.publish("re/x", 0, "end")
	p := expect[*packet.Publish](raw)
	if p.QoS != 1 || len(p.Props.SubscriptionIDs) != 1 || p.Props.SubscriptionIDs[0] != 2 {
		t.Errorf("after re-subscribe: qos %d ids %v, want qos 1 ids [2]", p.QoS, p.Props.SubscriptionIDs)
	}
	raw.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	if next := expect[*packet.Publish](raw); string(next.Payload) != "end" {
		t.Errorf("second copy after re-subscribe: %q", next.Payload)
	}
}

// TestMQTT31Client proves an MQTT 3.1 (MQIsdp) client, Paho v3 with
// protocol version 3, connects, subscribes and receives.
func TestMQTT31Client(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	c := connectV3(t, srv.URL("tcp"), "mqtt31", true, func(o *mqtt.ClientOptions) { o.SetProtocolVersion(3) })
	c.subscribe("v31/#", 2)
	p := connectV5(t, tcpAddr(t, srv), v5Connect("pub", true, 0))
	p.publish("v31/a", 2, "to 3.1")
	if m := recv1(t, c.msgs); string(m.Payload) != "to 3.1" || m.QoS != 2 {
		t.Errorf("3.1 client got %v", m)
	}
	c.publish("v31/b", 1, false, "from 3.1")
	if m := recv1(t, c.msgs); string(m.Payload) != "from 3.1" {
		t.Errorf("3.1 client got its own %v", m)
	}
}

// TestRequestProblemInformation proves a client that sets Request Problem
// Information to 0 gets no Reason String on SUBACK [MQTT-3.1.2-29], and one
// that leaves the default may.
func TestRequestProblemInformation(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	raw := dialRaw(t, tcpAddr(t, srv), packet.V5)
	cp := rawConnect("quiet", true)
	cp.Props.RequestProblemInfo = 0
	cp.Props.Set(packet.PropRequestProblemInfo)
	raw.mustConnect(cp)
	raw.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{rawSub("a/#/b", 1)}})
	p, _, err := raw.readPacket(waitTimeout)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if sa, ok := p.(*packet.Suback); ok && (sa.Props.ReasonString != "" || len(sa.Props.User) > 0) {
		t.Errorf("SUBACK carries Reason String %q / User Properties %v with Request Problem Information 0", sa.Props.ReasonString, sa.Props.User)
	}
}

// TestPayloadFormatInvalid proves a PUBLISH claiming a UTF-8 payload
// (Payload Format Indicator 1) that is not valid UTF-8 is refused with 0x99
// [MQTT-3.3.2-4] in PUBACK (or DISCONNECT) and not delivered.
func TestPayloadFormatInvalid(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	s := connectV5(t, addr, v5Connect("s", true, 0))
	s.subscribe(sub("pf/#", 1))
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("pf", true))
	p := &packet.Publish{Topic: "pf/bad", QoS: 1, PacketID: 3, Payload: []byte{0xff, 0xfe}}
	p.Props.PayloadFormat = 1
	p.Props.Set(packet.PropPayloadFormat)
	raw.send(p)
	got, _, err := raw.readPacket(waitTimeout)
	switch got := got.(type) {
	case *packet.Ack:
		if got.Kind != packet.PUBACK || got.ReasonCode != 0x99 {
			t.Errorf("got %v reason 0x%02x, want PUBACK 0x99", got.Kind, got.ReasonCode)
		}
	case *packet.Disconnect:
		if got.ReasonCode != 0x99 {
			t.Errorf("got DISCONNECT 0x%02x, want 0x99", got.ReasonCode)
		}
	default:
		t.Errorf("got %v (%v), want PUBACK or DISCONNECT 0x99", got, err)
	}
	connectV5(t, addr, v5Connect("p", true, 0)).publish("pf/end", 1, "end")
	if ms := recvUntil(t, s.msgs, "pf/end"); len(ms) > 0 {
		t.Errorf("invalid UTF-8 payload delivered: %v", summarize(ms))
	}
}

// TestClientsCannotPublishToSys proves a client PUBLISH to a $SYS topic is
// refused (v5 PUBACK 0x87) and never reaches $SYS subscribers.
func TestClientsCannotPublishToSys(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, openSys)
	addr := tcpAddr(t, srv)
	s := connectV5(t, addr, v5Connect("s", true, 0))
	s.subscribe(sub("$SYS/fake/#", 1), sub("marker", 0))
	c := connectV5(t, addr, v5Connect("c", true, 0))
	ctx := t.Context()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: "$SYS/fake/x", QoS: 1, Payload: []byte("spoof")})
	if err == nil || pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("PUBLISH to $SYS: response %+v err %v, want PUBACK 0x87", pr, err)
	}
	c.publish("marker", 0, "m")
	if got := recvUntil(t, s.msgs, "marker"); len(got) > 0 {
		t.Errorf("$SYS subscriber got a client's message: %v", summarize(got))
	}
}

// TestInvalidConnectProperties proves CONNECT with Receive Maximum 0 or
// Maximum Packet Size 0 is a Protocol Error [MQTT-3.1.2.11.3, .4]: CONNACK
// 0x82 (or 0x81) or a close, and a Subscription Identifier of 0 is a
// Protocol Error too [MQTT-3.8.2.1.2].
func TestInvalidConnectProperties(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	for _, prop := range []packet.PropID{packet.PropReceiveMaximum, packet.PropMaximumPacketSize} {
		raw := dialRaw(t, addr, packet.V5)
		cp := rawConnect("bad", true)
		cp.Props.Set(prop) // present with value 0
		raw.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: cp.ClientID, CleanStart: true, KeepAlive: 30, Props: cp.Props})
		res := raw.awaitClose(waitTimeout)
		if !res.closed {
			t.Errorf("property 0x%02x = 0: connection left open", prop)
			continue
		}
		for _, p := range res.other {
			if ca, ok := p.(*packet.Connack); ok && ca.ReasonCode != 0x82 && ca.ReasonCode != 0x81 {
				t.Errorf("property 0x%02x = 0: CONNACK 0x%02x, want 0x82 or 0x81", prop, ca.ReasonCode)
			}
		}
	}

	// SUBSCRIBE with Subscription Identifier 0, hand-written: the codec
	// refuses to encode it.
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("subid0", true))
	raw.sendBytes([]byte{0x82, 0x09, 0x00, 0x01, 0x02, 0x0b, 0x00, 0x00, 0x01, 'x', 0x01})
	raw.mayClose(waitTimeout, 0x81, 0x82)
}
