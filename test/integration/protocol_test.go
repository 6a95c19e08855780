package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestKeepAliveTimeout proves a connection silent for 1.5x its keep-alive is
// closed [MQTT-3.1.2-22] (a v5 client may first get DISCONNECT 0x8D), not
// before the keep-alive itself, and that PINGREQ keeps it open.
func TestKeepAliveTimeout(t *testing.T) {
	// Not parallel: timing bounds are checked on a quiet machine.
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		raw := dialRaw(t, addr, v)
		raw.mustConnect(&packet.Connect{ClientID: "silent" + v.String(), CleanStart: true, KeepAlive: 1})
		res := raw.mustClose(3 * time.Second)
		if res.after < 900*time.Millisecond || res.after > 2*time.Second {
			t.Errorf("v%v: silent connection with keep-alive 1s closed after %v, want 1s..1.5s (+slack)", v, res.after)
		}
		if res.disconnect != nil && res.disconnect.ReasonCode != 0x8D {
			t.Errorf("v%v: DISCONNECT reason 0x%02x, want 0x8D", v, res.disconnect.ReasonCode)
		}
	}

	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(&packet.Connect{ClientID: "pinger", CleanStart: true, KeepAlive: 1})
	// Pings every 0.5 s for 2.5 s: well past 1.5x the keep-alive.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for range 5 {
		<-tick.C
		raw.send(&packet.Pingreq{})
		p, _, err := raw.readPacket(time.Second)
		if err != nil {
			t.Fatalf("pinging connection: %v", err)
		}
		if _, ok := p.(*packet.Pingresp); !ok {
			t.Fatalf("PINGREQ answered with %v [MQTT-3.12.4-1]", p.Type())
		}
	}
}

// TestConnectTimeout proves a socket that sends no CONNECT, or only part of
// one, is closed after the configured connect timeout [MQTT-3.1.4].
func TestConnectTimeout(t *testing.T) {
	// Not parallel: timing bounds are checked on a quiet machine.
	srv := startBroker(t, func(c *config.Config) { c.MQTT.ConnectTimeout = 500 * time.Millisecond })
	addr := tcpAddr(t, srv)
	idle := dialRaw(t, addr, packet.V5)
	partial := dialRaw(t, addr, packet.V5)
	partial.sendBytes([]byte{0x10, 0x20, 0x00, 0x04, 'M'})
	for name, c := range map[string]*rawConn{"idle": idle, "partial": partial} {
		res := c.mustClose(3 * time.Second)
		if res.after > 2*time.Second {
			t.Errorf("%s socket closed after %v, connect timeout 500ms", name, res.after)
		}
	}
}

// TestFirstPacketMustBeConnect proves a first packet other than CONNECT
// closes the connection [MQTT-3.1.0-1] and a second CONNECT is a protocol
// violation [MQTT-3.1.0-2] (v5: DISCONNECT 0x82).
func TestFirstPacketMustBeConnect(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	raw := dialRaw(t, addr, packet.V311)
	raw.send(&packet.Pingreq{})
	res := raw.mustClose(waitTimeout)
	if len(res.other) > 0 {
		t.Errorf("answered a pre-CONNECT PINGREQ with %v", res.other)
	}

	raw = dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("twice", true))
	raw.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "twice", CleanStart: true, KeepAlive: 30})
	raw.mayClose(waitTimeout, 0x82)

	raw = dialRaw(t, addr, packet.V311)
	raw.mustConnect(rawConnect("twice3", true))
	raw.send(&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: "twice3", CleanStart: true, KeepAlive: 30})
	raw.mustClose(waitTimeout)
}

// TestConnectRefusals proves CONNACK codes for refused CONNECTs: an
// unsupported protocol level gets 0x01 (3.1.1 form) or 0x84 [MQTT-3.1.2-2];
// a v3.1.1 persistent session with an empty client id gets 0x02
// [MQTT-3.1.3-8]; a too-long client id is refused.
func TestConnectRefusals(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxClientIDLength = 23 })
	addr := tcpAddr(t, srv)

	raw := dialRaw(t, addr, packet.V311)
	// CONNECT for protocol level 9, otherwise a valid 3.1.1 CONNECT.
	raw.sendBytes([]byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x09, 0x02, 0x00, 0x1e, 0x00, 0x01, 'x'})
	res := raw.awaitClose(waitTimeout)
	if !res.closed {
		t.Errorf("unsupported protocol level: connection left open")
	}
	if len(res.other) > 0 {
		if ca, ok := res.other[0].(*packet.Connack); !ok || (ca.ReasonCode != 0x01 && ca.ReasonCode != 0x84) {
			t.Errorf("unsupported protocol level: got %+v, want CONNACK 0x01 or 0x84", res.other[0])
		}
	}

	raw = dialRaw(t, addr, packet.V311)
	if ca := raw.connect(&packet.Connect{ClientID: "", CleanStart: false, KeepAlive: 30}); ca.ReasonCode != 0x02 {
		t.Errorf("v3.1.1 clean=false with empty client id: CONNACK 0x%02x, want 0x02", ca.ReasonCode)
	}
	raw.mustClose(waitTimeout)

	raw = dialRaw(t, addr, packet.V5)
	if ca := raw.connect(rawConnect("this-client-id-is-far-too-long", true)); ca.ReasonCode != 0x85 {
		t.Errorf("v5 over-long client id: CONNACK 0x%02x, want 0x85", ca.ReasonCode)
	}
	raw.mustClose(waitTimeout)
}

// TestInvalidTopicNamesAndFilters proves a PUBLISH topic with wildcards
// closes the connection [MQTT-3.3.2-2] (a v5 DISCONNECT, if sent, says 0x90,
// 0x81 or 0x82) and bad
// filters get SUBACK 0x8F (v5) / 0x80 (v3.1.1) [MQTT-4.7.1-1, -2].
func TestInvalidTopicNamesAndFilters(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)

	// A filter breaking [MQTT-4.7.1-1, -2] may be refused per filter (SUBACK
	// 0x8F / 0x80) or treated as a malformed packet (close, v5 DISCONNECT
	// 0x81 or 0x82); either way the valid filter beside it must not be
	// granted while the bad one silently is.
	for i, f := range []string{"a/#/b", "a/b#", "a+/b", "#/a", "a/+x"} {
		for _, v := range []packet.Version{packet.V5, packet.V311} {
			raw := dialRaw(t, addr, v)
			raw.mustConnect(rawConnect(fmt.Sprint("f", i, v), true))
			codes, closed := raw.subscribeOrClose(1, rawSub(f, 1), rawSub("ok/+", 1))
			refuse := byte(0x8F)
			if v == packet.V311 {
				refuse = 0x80
			}
			switch {
			case closed != nil:
				checkMalformedClose(t, fmt.Sprintf("v%v SUBSCRIBE %q", v, f), closed, 0x81, 0x82, 0x8F)
			case len(codes) != 2 || codes[0] != refuse || codes[1] != 0x01:
				t.Errorf("v%v SUBSCRIBE [%q ok/+]: SUBACK %x, want [%x 01]", v, f, codes, refuse)
			}
		}
	}

	for _, topic := range []string{"a/+", "a/#", "+"} {
		raw := dialRaw(t, addr, packet.V5)
		raw.mustConnect(rawConnect("p5", true))
		raw.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("x")})
		if res := raw.mayClose(waitTimeout, 0x90, 0x81, 0x82); res.disconnect == nil {
			t.Logf("PUBLISH to %q: closed without DISCONNECT", topic)
		}

		raw3 := dialRaw(t, addr, packet.V311)
		raw3.mustConnect(rawConnect("p3", true))
		raw3.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: []byte("x")})
		raw3.mustClose(waitTimeout)
	}
}

// TestMalformedPackets proves malformed input closes the connection, after
// an optional v5 DISCONNECT 0x81 (or 0x82 where a protocol error fits)
// [MQTT-4.13.1-1]: Remaining Length over four bytes, wrong
// reserved flags [MQTT-2.1.3-1], QoS 3 [MQTT-3.3.1-4], invalid UTF-8 in a
// topic [MQTT-1.5.4-1], a U+0000 in a topic [MQTT-1.5.4-2], a body shorter
// than its fields, a PUBLISH property not allowed in PUBLISH, and a
// reserved packet type.
func TestMalformedPackets(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	cases := []struct {
		name  string
		bytes []byte
		codes []byte // acceptable v5 DISCONNECT reasons
	}{
		{"remaining length of five bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}, []byte{0x81}},
		{"subscribe flags 0000", []byte{0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x00}, []byte{0x81}},
		{"publish qos 3", []byte{0x36, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 0x00}, []byte{0x81}},
		{"topic invalid utf-8", []byte{0x30, 0x06, 0x00, 0x02, 0xc3, 0x28, 0x00, 'x'}, []byte{0x81}},
		{"topic with U+0000", []byte{0x30, 0x06, 0x00, 0x02, 'a', 0x00, 0x00, 'x'}, []byte{0x81}},
		{"topic length beyond body", []byte{0x30, 0x04, 0x00, 0x09, 'a', 'b'}, []byte{0x81}},
		{"session expiry property in publish", []byte{0x30, 0x0a, 0x00, 0x01, 'a', 0x05, 0x11, 0x00, 0x00, 0x00, 0x01, 'x'}, []byte{0x81, 0x82}},
		{"reserved packet type 0", []byte{0x00, 0x00}, []byte{0x81, 0x82}},
		{"pubrel flags 0000", []byte{0x60, 0x02, 0x00, 0x01}, []byte{0x81}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := dialRaw(t, addr, packet.V5)
			raw.mustConnect(rawConnect("m5", true))
			raw.sendBytes(tc.bytes)
			if res := raw.mayClose(waitTimeout, tc.codes...); res.disconnect == nil {
				t.Logf("v5: closed without DISCONNECT")
			}

			if tc.name == "session expiry property in publish" {
				return // v3.1.1 has no properties: those bytes are a valid topic and payload
			}
			raw3 := dialRaw(t, addr, packet.V311)
			raw3.mustConnect(rawConnect("m3", true))
			b := tc.bytes
			if tc.name == "topic invalid utf-8" || tc.name == "topic with U+0000" || tc.name == "topic length beyond body" {
				b = v311Publish(b)
			}
			raw3.sendBytes(b)
			raw3.mustClose(waitTimeout)
		})
	}
}

// v311Publish strips the v5 property length byte (0x00 after the topic) from
// a hand-written QoS 0 v5 PUBLISH so the same bytes test a v3.1.1 broker path.
func v311Publish(b []byte) []byte {
	tl := int(b[2])<<8 | int(b[3])
	if 4+tl >= len(b) {
		return b
	}
	out := append([]byte{b[0], b[1] - 1}, b[2:4+tl]...)
	return append(out, b[5+tl:]...)
}

// TestQoS2ExactlyOnceWithDuplicate proves a QoS 2 PUBLISH resent with DUP
// before PUBREL is delivered once [MQTT-4.3.3-10 / 4.3.3], and the PUBREC /
// PUBCOMP flow completes with the same packet id.
func TestQoS2ExactlyOnceWithDuplicate(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	s := connectV5(t, addr, v5Connect("s", true, 0))
	s.subscribe(sub("q2/#", 2))
	for _, v := range []packet.Version{packet.V311, packet.V5} {
		raw := dialRaw(t, addr, v)
		raw.mustConnect(rawConnect("pub"+v.String(), true))
		pub := &packet.Publish{Topic: "q2/x", QoS: 2, PacketID: 7, Payload: []byte("once " + v.String())}
		raw.send(pub)
		if rec := expect[*packet.Ack](raw); rec.Kind != packet.PUBREC || rec.PacketID != 7 {
			t.Fatalf("v%v: got %v id %d, want PUBREC 7", v, rec.Kind, rec.PacketID)
		}
		pub.Dup = true
		raw.send(pub)
		if rec := expect[*packet.Ack](raw); rec.Kind != packet.PUBREC || rec.PacketID != 7 {
			t.Fatalf("v%v: resend got %v id %d, want PUBREC 7", v, rec.Kind, rec.PacketID)
		}
		raw.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
		if comp := expect[*packet.Ack](raw); comp.Kind != packet.PUBCOMP || comp.PacketID != 7 {
			t.Fatalf("v%v: got %v id %d, want PUBCOMP 7", v, comp.Kind, comp.PacketID)
		}
		raw.send(&packet.Publish{Topic: "q2/end", QoS: 0, Payload: []byte("end")})
		got := recvUntil(t, s.msgs, "q2/end")
		if len(got) != 1 || string(got[0].Payload) != "once "+v.String() || got[0].QoS != 2 {
			t.Errorf("v%v: subscriber got %v, want exactly one qos 2 copy", v, summarize(got))
		}
	}
}

// checkMalformedClose checks a closeResult from subscribeOrClose: closed, and
// any DISCONNECT carries one of codes.
func checkMalformedClose(t *testing.T, what string, res *closeResult, codes ...byte) {
	t.Helper()
	if !res.closed {
		t.Errorf("%s: neither SUBACK nor close", what)
		return
	}
	if res.disconnect != nil && !slices.Contains(codes, res.disconnect.ReasonCode) {
		t.Errorf("%s: DISCONNECT 0x%02x, want one of %x", what, res.disconnect.ReasonCode, codes)
	}
	t.Logf("%s: refused by closing the connection (DISCONNECT %v)", what, res.disconnect != nil)
}

// TestProtocolErrors proves packets that are well framed but break a
// protocol rule close the connection, a v5 DISCONNECT (optional, as 4.13
// allows) carrying a fitting reason code: No Local on a shared
// subscription [MQTT-3.8.3-4], Retain Handling 3 and reserved subscription
// option bits [MQTT-3.8.3-5], SUBSCRIBE / UNSUBSCRIBE without filters
// [MQTT-3.8.3-2, MQTT-3.10.3-2], packet identifier 0 [MQTT-2.2.1-3], Topic
// Alias 0 [MQTT-3.3.2-8], server-only packets from a client, and AUTH without an
// authentication method [MQTT-4.12.0-1] or from a 3.1.1 client.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	share := append([]byte{0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0a}, "$share/g/t"...)
	cases := []struct {
		name  string
		v     packet.Version
		bytes []byte
		codes []byte
	}{
		{"no local on shared subscription", 5, append(share, 0x05), []byte{0x82, 0x81, 0x8F}},
		{"retain handling 3", 5, []byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x31}, []byte{0x81, 0x82}},
		{"reserved subscription option bits", 5, []byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0xc1}, []byte{0x81, 0x82}},
		{"subscribe without filters", 5, []byte{0x82, 0x03, 0x00, 0x01, 0x00}, []byte{0x81, 0x82}},
		{"unsubscribe without filters", 5, []byte{0xa2, 0x03, 0x00, 0x01, 0x00}, []byte{0x81, 0x82}},
		{"publish qos 1 with packet id 0", 5, []byte{0x32, 0x07, 0x00, 0x01, 'a', 0x00, 0x00, 0x00, 'x'}, []byte{0x81, 0x82}},
		{"subscribe with packet id 0", 5, []byte{0x82, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01, 'a', 0x01}, []byte{0x81, 0x82}},
		{"topic alias 0", 5, []byte{0x30, 0x08, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x00, 'x'}, []byte{0x94, 0x82}},
		{"client sends CONNACK", 5, []byte{0x20, 0x03, 0x00, 0x00, 0x00}, []byte{0x81, 0x82}},
		{"client sends SUBACK", 5, []byte{0x90, 0x04, 0x00, 0x01, 0x00, 0x00}, []byte{0x81, 0x82}},
		{"auth without authentication method", 5, []byte{0xf0, 0x00}, []byte{0x81, 0x82, 0x8C}},
		{"3.1.1 publish qos 1 with packet id 0", 4, []byte{0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x00, 'x'}, nil},
		{"3.1.1 subscribe without filters", 4, []byte{0x82, 0x02, 0x00, 0x01}, nil},
		{"3.1.1 client sends AUTH", 4, []byte{0xf0, 0x00}, nil},
		{"3.1.1 client sends CONNACK", 4, []byte{0x20, 0x02, 0x00, 0x00}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := dialRaw(t, addr, tc.v)
			raw.mustConnect(rawConnect("pe", true))
			raw.sendBytes(tc.bytes)
			res := raw.mayClose(waitTimeout, tc.codes...)
			for _, p := range res.other {
				if sa, ok := p.(*packet.Suback); ok {
					t.Errorf("answered with SUBACK %x before closing", sa.ReasonCodes)
				}
			}
		})
	}
}

// TestClientSubscriptionIdentifierNotForwarded proves a Subscription
// Identifier a client wrongly puts in its PUBLISH [MQTT-3.3.4-6] never
// reaches subscribers: the broker either closes the connection or drops the
// property, and subscribers see only their own identifiers.
func TestClientSubscriptionIdentifierNotForwarded(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	s := dialRaw(t, addr, packet.V5)
	s.mustConnect(rawConnect("s", true))
	s.subscribe(1, subID(0), rawSub("a", 0))
	s.subscribe(2, subID(7), rawSub("b", 0))

	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("p", true))
	raw.sendBytes([]byte{0x30, 0x07, 0x00, 0x01, 'a', 0x02, 0x0b, 0x05, 'x'}) // "a" with Subscription Identifier 5
	raw.sendBytes([]byte{0x30, 0x07, 0x00, 0x01, 'b', 0x02, 0x0b, 0x05, 'y'}) // "b" with Subscription Identifier 5
	// The marker comes from the publisher if the broker kept it (a PINGREQ
	// answered after both PUBLISHes), else from another client once the
	// publisher's connection is closed, so after anything it routed.
	_, _ = raw.Write([]byte{byte(packet.PINGREQ) << 4, 0}) // the broker may have closed the connection
	marker := raw
	if p, _, err := raw.readPacket(waitTimeout); err != nil || p.Type() != packet.PINGRESP {
		raw.awaitClose(waitTimeout)
		marker = dialRaw(t, addr, packet.V5)
		marker.mustConnect(rawConnect("m", true))
	}
	marker.publishMarker("a", 0)
	s.untilMarker("a", func(p packet.Packet) {
		pb, ok := p.(*packet.Publish)
		if !ok {
			return
		}
		want := []uint32(nil)
		if pb.Topic == "b" {
			want = []uint32{7}
		}
		if !slices.Equal(pb.Props.SubscriptionIDs, want) {
			t.Errorf("subscriber of %q got Subscription Identifiers %v, want %v", pb.Topic, pb.Props.SubscriptionIDs, want)
		}
	})
}

// TestServerKeepAliveEnforced proves a v5 client told a lower Server Keep
// Alive in CONNACK is held to it [MQTT-3.2.2-21, MQTT-3.1.2-22].
func TestServerKeepAliveEnforced(t *testing.T) {
	// Not parallel: timing bounds are checked on a quiet machine.
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxKeepAlive = 1 })
	raw := dialRaw(t, tcpAddr(t, srv), packet.V5)
	ca := raw.mustConnect(&packet.Connect{ClientID: "lazy", CleanStart: true, KeepAlive: 60})
	if !ca.Props.Has(packet.PropServerKeepAlive) || ca.Props.ServerKeepAlive != 1 {
		t.Fatalf("CONNACK Server Keep Alive %d (present %v), want 1", ca.Props.ServerKeepAlive, ca.Props.Has(packet.PropServerKeepAlive))
	}
	if res := raw.mustClose(3 * time.Second); res.after > 2*time.Second {
		t.Errorf("closed after %v; Server Keep Alive 1 s allows 1.5 s", res.after)
	}
}
