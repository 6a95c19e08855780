package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestFeatureSwitchesAdvertisedAndEnforced proves that with Maximum QoS 1,
// retain, wildcard, shared subscriptions and subscription identifiers turned
// off, a v5 CONNACK says so [MQTT-3.2.2.3] and the broker enforces it:
// SUBSCRIBE grants at most QoS 1 and refuses wildcard (0xA2) and shared
// (0x9E) filters; PUBLISH QoS 2 is DISCONNECT 0x9B [MQTT-3.2.2-11], a
// retained PUBLISH 0x9A [MQTT-3.2.2-14], a Subscription Identifier 0xA1 or
// protocol error.
func TestFeatureSwitchesAdvertisedAndEnforced(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.MQTT.MaxQoS = 1
		c.MQTT.RetainAvailable = false
		c.MQTT.WildcardSubscriptions = false
		c.MQTT.SharedSubscriptions = false
		c.MQTT.SubscriptionIdentifiers = false
	})
	addr := tcpAddr(t, srv)

	raw := dialRaw(t, addr, packet.V5)
	ca := raw.mustConnect(rawConnect("caps", true))
	pr := &ca.Props
	check := func(name string, id packet.PropID, got, want byte) {
		if !pr.Has(id) || got != want {
			t.Errorf("CONNACK %s = %d (present %v), want %d", name, got, pr.Has(id), want)
		}
	}
	check("Maximum QoS", packet.PropMaximumQoS, pr.MaximumQoS, 1)
	check("Retain Available", packet.PropRetainAvailable, pr.RetainAvailable, 0)
	check("Wildcard Subscription Available", packet.PropWildcardSubAvailable, pr.WildcardSubAvailable, 0)
	check("Shared Subscription Available", packet.PropSharedSubAvailable, pr.SharedSubAvailable, 0)
	check("Subscription Identifiers Available", packet.PropSubIDAvailable, pr.SubIDAvailable, 0)

	codes := raw.subscribe(1, packet.Properties{}, rawSub("plain", 2), rawSub("wild/+", 1), rawSub("wild/#", 0), rawSub("$share/g/t", 1))
	if !slices.Equal(codes, []byte{0x01, 0xA2, 0xA2, 0x9E}) {
		t.Errorf("SUBACK %x, want [01 a2 a2 9e]", codes)
	}

	v3 := connectV3(t, srv.URL("tcp"), "v3", true)
	if granted := v3.subscribe("plain", 2); granted != 1 {
		t.Errorf("v3.1.1 SUBSCRIBE qos 2 granted %d, want 1", granted)
	}

	cases := []struct {
		name  string
		send  packet.Packet
		codes []byte
	}{
		{"publish qos 2", &packet.Publish{Topic: "plain", QoS: 2, PacketID: 1, Payload: []byte("x")}, []byte{0x9B}},
		{"publish retained", &packet.Publish{Topic: "plain", QoS: 1, PacketID: 1, Retain: true, Payload: []byte("x")}, []byte{0x9A}},
		{"subscription identifier", &packet.Subscribe{PacketID: 1, Props: subID(5), Subscriptions: []packet.Subscription{rawSub("plain", 1)}}, []byte{0xA1, 0x82}},
	}
	for _, tc := range cases {
		raw := dialRaw(t, addr, packet.V5)
		raw.mustConnect(rawConnect(tc.name, true))
		raw.send(tc.send)
		raw.mustClose(waitTimeout, tc.codes...)
	}
}

// TestMaxConnections proves a connection over MaxConnections is refused in
// CONNACK (v5: 0x97 Quota exceeded or 0x89 Server busy; 3.1.1: 0x03 Server
// unavailable) and that a slot freed by a disconnect is reusable.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxConnections = 2 })
	addr := tcpAddr(t, srv)
	a := connectV5(t, addr, v5Connect("a", true, 0))
	connectV5(t, addr, v5Connect("b", true, 0))

	raw := dialRaw(t, addr, packet.V5)
	if ca := raw.connect(rawConnect("c", true)); ca.ReasonCode != 0x97 && ca.ReasonCode != 0x89 {
		t.Errorf("v5 third connection: CONNACK 0x%02x, want 0x97 or 0x89", ca.ReasonCode)
	}
	raw.mustClose(waitTimeout)
	raw3 := dialRaw(t, addr, packet.V311)
	if ca := raw3.connect(rawConnect("c3", true)); ca.ReasonCode != 0x03 {
		t.Errorf("v3.1.1 third connection: CONNACK 0x%02x, want 0x03", ca.ReasonCode)
	}
	raw3.mustClose(waitTimeout)

	a.disconnect(0, nil)
	waitClients(t, srv, 1)
	connectV5(t, addr, v5Connect("c", true, 0))
}

// TestQueueOverflowPolicies proves MaxQueuedMessages bounds an offline
// session's queue: drop_new keeps the oldest messages, drop_oldest the
// newest, and each drop is counted under queue_full.
func TestQueueOverflowPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{"drop_new", []string{"0", "1", "2"}},
		{"drop_oldest", []string{"3", "4", "5"}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			srv := startBroker(t, func(c *config.Config) {
				c.MQTT.MaxQueuedMessages = 3
				c.MQTT.QueueOverflow = tc.policy
			})
			addr := tcpAddr(t, srv)
			c := connectV5(t, addr, v5Connect("q", false, 300))
			c.subscribe(sub("q", 1), sub("marker", 0))
			c.disconnect(0, nil)
			waitClients(t, srv, 0)
			p := connectV5(t, addr, v5Connect("p", true, 0))
			for i := range 6 {
				p.publish("q", 1, fmt.Sprint(i))
			}
			c = connectV5(t, addr, v5Connect("q", false, 300))
			got := payloads(recvN(t, c.msgs, 3, waitTimeout))
			p.publish("marker", 0, "m")
			if extra := recvUntil(t, c.msgs, "marker"); len(extra) > 0 {
				got = append(got, payloads(extra)...)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: delivered %v, want %v", tc.policy, got, tc.want)
			}
			if d := srv.Broker().Stats().Drops["queue_full"]; d != 3 {
				t.Errorf("%s: queue_full drops = %d, want 3", tc.policy, d)
			}
		})
	}
}

// TestSubscriptionAndTopicLimits proves MaxSubscriptionsPerClient refuses
// one subscription too many (0x97 Quota exceeded / 0x80 in 3.1.1) while
// re-subscribing an existing filter still works, and MaxTopicLevels refuses
// deeper filters (0x8F) and topic names.
func TestSubscriptionAndTopicLimits(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.MQTT.MaxSubscriptionsPerClient = 2
		c.MQTT.MaxTopicLevels = 3
	})
	addr := tcpAddr(t, srv)
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("lim", true))
	if codes := raw.subscribe(1, packet.Properties{}, rawSub("a", 1), rawSub("b", 1), rawSub("c", 1), rawSub("a", 0)); !slices.Equal(codes, []byte{0x01, 0x01, 0x97, 0x00}) {
		t.Errorf("v5 SUBACK %x, want [01 01 97 00]", codes)
	}
	raw3 := dialRaw(t, addr, packet.V311)
	raw3.mustConnect(rawConnect("lim3", true))
	if codes := raw3.subscribe(1, packet.Properties{}, rawSub("a", 1), rawSub("b", 1), rawSub("c", 1)); !slices.Equal(codes, []byte{0x01, 0x01, 0x80}) {
		t.Errorf("v3.1.1 SUBACK %x, want [01 01 80]", codes)
	}

	deep := dialRaw(t, addr, packet.V5)
	deep.mustConnect(rawConnect("deep", true))
	if codes := deep.subscribe(1, packet.Properties{}, rawSub("a/b/c/d", 1), rawSub("a/b/+", 1)); !slices.Equal(codes, []byte{0x8F, 0x01}) {
		t.Errorf("SUBACK for a 4-level filter with MaxTopicLevels 3: %x, want [8f 01]", codes)
	}
	deep.send(&packet.Publish{Topic: "a/b/c/d", QoS: 1, PacketID: 1, Payload: []byte("x")})
	// A v5 PUBLISH over the limit may be refused in PUBACK or by DISCONNECT.
	p, _, err := deep.readPacket(waitTimeout)
	switch p := p.(type) {
	case *packet.Ack:
		if p.Kind != packet.PUBACK || p.ReasonCode < 0x80 {
			t.Errorf("PUBLISH to a 4-level topic: %v reason 0x%02x, want a refusal", p.Kind, p.ReasonCode)
		}
	case *packet.Disconnect:
		if p.ReasonCode != 0x90 {
			t.Errorf("PUBLISH to a 4-level topic: DISCONNECT 0x%02x, want 0x90", p.ReasonCode)
		}
	case nil:
		t.Logf("PUBLISH to a 4-level topic: connection closed (%v)", err)
	default:
		t.Errorf("PUBLISH to a 4-level topic: got %v", p.Type())
	}
}

// TestExpiryCaps proves MaxSessionExpiry lowers a v5 client's Session
// Expiry Interval and says so in CONNACK [MQTT-3.2.2.3.2], and
// MaxMessageExpiry expires queued messages that asked for no expiry.
func TestExpiryCaps(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.MQTT.MaxSessionExpiry = 60 * time.Second
		c.MQTT.MaxMessageExpiry = time.Second
	})
	addr := tcpAddr(t, srv)
	c, ca, err := dialV5(t, addr, v5Connect("capped", false, 3600), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Properties == nil || ca.Properties.SessionExpiryInterval == nil || *ca.Properties.SessionExpiryInterval != 60 {
		t.Errorf("CONNACK Session Expiry Interval = %v, want 60", ca.Properties)
	}
	c.subscribe(sub("cap/#", 1))
	c.disconnect(0, nil)
	waitClients(t, srv, 0)
	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("cap/none", 1, "no expiry asked")
	published := time.Now()
	waitFor(t, 5*time.Second, "MaxMessageExpiry to pass", func() bool { return time.Since(published) > 2100*time.Millisecond })
	c = connectV5(t, addr, v5Connect("capped", false, 3600))
	p.publish("cap/marker", 0, "m")
	if got := recvUntil(t, c.msgs, "cap/marker"); len(got) > 0 {
		t.Errorf("message older than MaxMessageExpiry delivered: %v", summarize(got))
	}
}

// TestAnonymousRefused proves allow_anonymous: false refuses a CONNECT
// without credentials: v5 CONNACK 0x86 or 0x87, 3.1.1 0x04 or 0x05.
func TestAnonymousRefused(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.Auth.AllowAnonymous = false })
	addr := tcpAddr(t, srv)
	_, ca, err := dialV5(t, addr, v5Connect("anon", true, 0), nil)
	if err == nil || ca == nil || (ca.ReasonCode != 0x86 && ca.ReasonCode != 0x87) {
		t.Errorf("v5 anonymous CONNECT: err %v, CONNACK %+v, want 0x86 or 0x87", err, ca)
	}
	_, err = dialV3(t, srv.URL("tcp"), "anon3", true, func(o *mqtt.ClientOptions) { o.SetConnectRetry(false) })
	if err == nil {
		t.Errorf("v3.1.1 anonymous CONNECT accepted")
	}
	raw := dialRaw(t, addr, packet.V311)
	if ca := raw.connect(rawConnect("anon-raw", true)); ca.ReasonCode != 0x04 && ca.ReasonCode != 0x05 {
		t.Errorf("v3.1.1 anonymous CONNECT: CONNACK 0x%02x, want 0x04 or 0x05", ca.ReasonCode)
	}
}

// TestMaxInflightWindow proves MaxInflight caps unacknowledged QoS 1
// deliveries even when the client's Receive Maximum is larger.
func TestMaxInflightWindow(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxInflight = 3 })
	addr := tcpAddr(t, srv)
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("win", true))
	raw.subscribe(1, subID(0), rawSub("win", 1))
	p := connectV5(t, addr, v5Connect("p", true, 0))
	for i := range 8 {
		p.publish("win", 1, fmt.Sprint(i))
	}
	first := raw.publishes(3)
	p.publish("win", 0, markerPayload) // QoS 0 passes the window that holds the fourth
	raw.expectMarker("win")
	for _, pb := range first {
		raw.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pb.PacketID})
	}
	rest := raw.publishes(3)
	if string(rest[0].Payload) != "3" {
		t.Errorf("after acks got %q, want \"3\"", rest[0].Payload)
	}
}
