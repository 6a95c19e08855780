// The device scenario through internal/server: the users and ACL files,
// mosquitto clients and Paho, against a whole node.
package auth_test

import (
	"context"
	"log/slog"
	"net/url"
	"testing"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

func startServer(t *testing.T) *device {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir, cfg.SysInterval = "", 0
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}}
	deviceFiles(t, &cfg.Auth)
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		defer cancel()
		srv.Shutdown(ctx)
	})
	u, err := url.Parse(srv.URL("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	return &device{addr: u.Host, users: cfg.Auth.UsersFile,
		subscriptions: func() int64 { return srv.Broker().Stats().Subscriptions }}
}

func TestE2EMosquittoDeviceIsolation(t *testing.T) { mosquittoIsolation(t, startServer(t)) }

func TestE2EPahoDeviceIsolationAndRevocation(t *testing.T) { pahoIsolation(t, startServer(t), true) }
