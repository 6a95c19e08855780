package auth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestWebhookUsernameIsTheIdentity: a webhook that knows a device by its
// token answers with the device's username, and the broker takes that as
// the client's identity, for ACLs and as its session's owner, whatever
// username the CONNECT carried. An answer without one keeps the CONNECT's.
func TestWebhookUsernameIsTheIdentity(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req webhookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad request", 400)
			return
		}
		switch req.Password {
		case "token-of-dev-a":
			w.Write([]byte(`{"result":"allow","username":"dev-a"}`))
		case "token-of-ops":
			w.Write([]byte(`{"result":"allow"}`))
		default:
			w.Write([]byte(`{"result":"ignore"}`)) // the users file decides
		}
	}))
	t.Cleanup(srv.Close)
	_, addr, _ := deviceService(t, func(c *config.Auth) { c.Backends, c.HTTP.URL = "http,users", srv.URL })
	// dev-a's token, with a CONNECT that claims to be dev-b.
	a := dial(t, addr, packet.V5)
	if ack := a.connect("dev-a-1", "dev-b", "token-of-dev-a"); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	if rc := a.publish("devices/dev-a/x", false); rc != 0 {
		t.Errorf("publish as the webhook's dev-a: 0x%02x", rc)
	}
	if rc := a.publish("devices/dev-b/x", false); rc != 0x87 {
		t.Errorf("publish as the CONNECT's dev-b: 0x%02x, want 0x87", rc)
	}
	// The session belongs to dev-a: dev-b cannot take it, dev-a can.
	if ack := dial(t, addr, packet.V5).connect("dev-a-1", "dev-b", "sb"); ack.ReasonCode != 0x87 {
		t.Errorf("dev-b taking the session over: CONNACK 0x%02x, want 0x87", ack.ReasonCode)
	}
	if ack := dial(t, addr, packet.V5).connect("dev-a-1", "dev-a", "sa"); ack.ReasonCode != 0 {
		t.Errorf("dev-a taking its session over: CONNACK 0x%02x", ack.ReasonCode)
	}
	if d, ok := a.next().(*packet.Disconnect); !ok || d.ReasonCode != 0x8E {
		t.Errorf("the webhook client after dev-a's takeover: %+v, want DISCONNECT 0x8E", d)
	}
	// No username in the answer: the CONNECT's.
	ops := dial(t, addr, packet.V5)
	if ack := ops.connect("ops-1", "ops", "token-of-ops"); ack.ReasonCode != 0 {
		t.Fatalf("ops: CONNACK 0x%02x", ack.ReasonCode)
	}
	if rc := ops.subscribe("devices/#"); rc != 1 {
		t.Errorf("ops subscribe: 0x%02x", rc)
	}
}
