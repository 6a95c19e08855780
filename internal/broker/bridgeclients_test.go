package broker

import (
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// connectLimits connects id with opts, asking for its queue limits, and
// returns CONNACK's culex.bridge_client and culex.max_queued_messages; the
// client then disconnects, ending its session.
func connectLimits(tb *testBroker, id string, opts ...func(*packet.Connect)) (bridge, msgs string) {
	tb.t.Helper()
	ask := func(p *packet.Connect) {
		p.Props.User = append(p.Props.User, packet.UserProperty{Key: LimitsRequest, Value: "1"})
		p.Props.Set(packet.PropUser)
	}
	c := tb.dial(packet.V5)
	ack := c.connect(id, append(opts, ask)...)
	if ack.ReasonCode != 0 {
		tb.t.Fatalf("connect %q: reason 0x%02x", id, ack.ReasonCode)
	}
	for _, u := range ack.Props.User {
		switch u.Key {
		case "culex.bridge_client":
			bridge = u.Value
		case "culex.max_queued_messages":
			msgs = u.Value
		}
	}
	c.send(&packet.Disconnect{})
	c.expectClosed()
	return bridge, msgs
}

// TestBridgeClientsByIdentity: with an Authenticator, mqtt.bridge_clients
// matches a session's authenticated identity only: an anonymous client and
// another identity that use the bridge's client id get a device's queue
// limit, the bridge's identity gets the bridge limit. Without one, the
// client id matches.
func TestBridgeClientsByIdentity(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedMessages = 100
	cfg.BridgeMaxQueuedMessages = 5000
	cfg.BridgeClients = "culex-bridge, bridge"
	as := func(user string) func(*packet.Connect) {
		return func(p *packet.Connect) { p.UsernameFlag, p.Username = true, user }
	}
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true, Authenticator: ownerAuth{}})
	for _, c := range []struct {
		what, id, user string
		bridge, msgs   string
	}{
		{"anonymous with the bridge's client id", "culex-bridge", "", "false", "100"},
		{"another identity with the bridge's client id", "culex-bridge", "mallory", "false", "100"},
		{"an identity named like the bridge's client id", "dev-1", "culex-bridge", "true", "5000"},
		{"the bridge's identity", "culex-bridge", "bridge", "true", "5000"},
		{"the bridge's identity, another client id", "b-2", "bridge", "true", "5000"},
	} {
		var opts []func(*packet.Connect)
		if c.user != "" {
			opts = append(opts, as(c.user))
		}
		if bridge, msgs := connectLimits(tb, c.id, opts...); bridge != c.bridge || msgs != c.msgs {
			t.Errorf("%s: bridge_client %q, max_queued_messages %q; want %q, %q", c.what, bridge, msgs, c.bridge, c.msgs)
		}
	}

	open := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	if bridge, msgs := connectLimits(open, "culex-bridge"); bridge != "true" || msgs != "5000" {
		t.Errorf("without authentication, the bridge's client id: bridge_client %q, max_queued_messages %q; want true, 5000", bridge, msgs)
	}
	if bridge, _ := connectLimits(open, "dev-1"); bridge != "false" {
		t.Errorf("without authentication, a device: bridge_client %q", bridge)
	}
}
