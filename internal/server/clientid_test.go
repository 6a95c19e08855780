package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/testlog"
)

// TestWarnClientIDRulesWithoutBinding: ACL rules that trust the client id
// (${clientid}, %c, a client section) are warned about at start-up and on
// reload unless auth.client_id_binding binds ids; other rules are not.
func TestWarnClientIDRulesWithoutBinding(t *testing.T) {
	const warning = "client ids are not bound"
	for _, tc := range []struct {
		acl, binding string
		warn         bool
	}{
		{"allow both devices/${clientid}/#\n", "none", true},
		{"allow both devices/%c/#\n", "none", true},
		{"client gw-1\nallow both gateways/#\n", "none", true},
		{"allow both devices/${clientid}/#\n", "equal", false},
		{"client gw-1\nallow both gateways/#\n", "prefix", false},
		{"allow both devices/${username}/#\n", "none", false},
	} {
		cfg := testConfig(t)
		cfg.Auth.ACLFile = filepath.Join(t.TempDir(), "acl")
		cfg.Auth.ClientIDBinding = tc.binding
		if err := os.WriteFile(cfg.Auth.ACLFile, []byte(tc.acl), 0o600); err != nil {
			t.Fatal(err)
		}
		logs := &testlog.Buffer{}
		srv, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), warning); got != tc.warn {
			t.Errorf("%q with binding %s: warned %v, want %v", tc.acl, tc.binding, got, tc.warn)
		}
		if err := srv.Reload(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(logs.String(), warning); tc.warn && got != 2 {
			t.Errorf("%q: %d warnings after a reload, want 2", tc.acl, got)
		}
		srv.Shutdown(context.Background())
	}
}

// TestWarnBridgeClientsAnonymous: mqtt.bridge_clients without
// authentication, anonymous access allowed, is warned about at start-up;
// without bridge_clients it is not.
func TestWarnBridgeClientsAnonymous(t *testing.T) {
	const warning = "mqtt.bridge_clients names client ids"
	for _, list := range []string{"culex-bridge", ""} {
		cfg := testConfig(t)
		cfg.MQTT.BridgeClients = list
		logs := &testlog.Buffer{}
		srv, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), warning); got != (list != "") {
			t.Errorf("bridge_clients %q: warned %v", list, got)
		}
		srv.Shutdown(context.Background())
	}
}
