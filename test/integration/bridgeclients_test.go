package integration

import (
	"testing"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestBridgeClientsIdentityOnly: a node with a users file, anonymous
// access on and mqtt.bridge_clients naming the identity dev-b gives the
// bridge queue limit to dev-b's sessions only. An anonymous client and
// dev-a that take the client id "dev-b" get a device's limit (CONNACK's
// answer to culex.limits).
func TestBridgeClientsIdentityOnly(t *testing.T) {
	_, addr, _ := startOwned(t, func(c *config.Config) {
		c.Auth.AllowAnonymous, c.Auth.AllowAnonymousSet = true, true
		c.MQTT.BridgeClients = "dev-b"
		c.MQTT.MaxQueuedMessages = 100
		c.MQTT.BridgeMaxQueuedMessages = 5000
	})
	limits := func(id, user string) (bridge, msgs string) {
		t.Helper()
		cp := login(packet.V5, id, user, 0)
		cp.Props.User = append(cp.Props.User, packet.UserProperty{Key: broker.LimitsRequest, Value: "1"})
		cp.Props.Set(packet.PropUser)
		c := dialRaw(t, addr, packet.V5)
		ack := c.mustConnect(cp)
		for _, u := range ack.Props.User {
			switch u.Key {
			case "culex.bridge_client":
				bridge = u.Value
			case "culex.max_queued_messages":
				msgs = u.Value
			}
		}
		return bridge, msgs
	}
	// Client id and user of each CONNECT, and the limits it must get.
	want := map[[2]string][2]string{
		{"dev-b", ""}:         {"false", "100"}, // anonymous with the bridge's client id
		{"dev-b", "dev-a"}:    {"false", "100"}, // another identity with it
		{"bridge-1", "dev-b"}: {"true", "5000"}, // the bridge's identity
	}
	for _, c := range [][2]string{{"dev-b", ""}, {"dev-b", "dev-a"}, {"bridge-1", "dev-b"}} {
		if bridge, msgs := limits(c[0], c[1]); [2]string{bridge, msgs} != want[c] {
			t.Errorf("client id %q, user %q: bridge_client %q, max_queued_messages %q; want %q", c[0], c[1], bridge, msgs, want[c])
		}
	}
}
