// The device scenario through internal/server: the users and ACL files,
// mosquitto clients and Paho, against a whole node.
package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

func startServer(t *testing.T) *device {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir, cfg.SysInterval = "", 0
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}}
	deviceFiles(t, &cfg.Auth)
	srv := runServer(t, cfg)
	u, err := url.Parse(srv.URL("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	return &device{addr: u.Host, users: cfg.Auth.UsersFile,
		subscriptions: func() int64 { return srv.Broker().Stats().Subscriptions }}
}

// runServer starts a node on cfg and shuts it down when the test ends.
func runServer(t *testing.T, cfg config.Config) *server.Server {
	t.Helper()
	return runServerLog(t, cfg, slog.New(slog.DiscardHandler))
}

// runServerLog is runServer logging to log.
func runServerLog(t *testing.T, cfg config.Config, log *slog.Logger) *server.Server {
	t.Helper()
	srv, err := server.New(cfg, log)
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
	return srv
}

func TestE2EMosquittoDeviceIsolation(t *testing.T) { mosquittoIsolation(t, startServer(t)) }

func TestE2EPahoDeviceIsolationAndRevocation(t *testing.T) { pahoIsolation(t, startServer(t), true) }

// TestE2EJWTExpiryDisconnects: a client whose JWT expires while it is
// connected is disconnected then, a v5 client with 0xA0 (maximum connect
// time); one that reconnected with a fresh token before is not.
func TestE2EJWTExpiryDisconnects(t *testing.T) {
	secret := []byte("expiry-test-secret-of-at-least-32-bytes")
	cfg := config.Default()
	cfg.DataDir, cfg.SysInterval = "", 0
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}}
	cfg.Auth.Backends = "jwt"
	cfg.Auth.JWT.SecretFile = filepath.Join(t.TempDir(), "secret")
	cfg.Auth.JWT.Leeway = 0
	if err := os.WriteFile(cfg.Auth.JWT.SecretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, cfg)
	u, _ := url.Parse(srv.URL("tcp"))

	// exp is in whole seconds: 2 s from now expires in 1 to 2 s.
	exp := time.Now().Add(2 * time.Second).Unix()
	dial := func(id string, exp int64) (*paho.Client, chan *paho.Disconnect) {
		return pahoConnect(t, u.Host, id, "dev-1", hs256(secret, fmt.Sprintf(`{"sub":"dev-1","exp":%d}`, exp)))
	}
	start := time.Now()
	_, gone := dial("expiring", exp)
	fresh, freshGone := dial("fresh", exp+3600)
	defer fresh.Disconnect(&paho.Disconnect{})
	select {
	case d := <-gone:
		if d.ReasonCode != 0xA0 {
			t.Fatalf("DISCONNECT 0x%02x, want 0xA0", d.ReasonCode)
		}
		if time.Now().Unix() < exp {
			t.Fatalf("disconnected after %v, before exp", time.Since(start))
		}
	case <-time.After(e2eWait):
		t.Fatal("still connected after its token expired")
	}
	select {
	case d := <-freshGone:
		t.Fatalf("the client with a valid token was disconnected: 0x%02x", d.ReasonCode)
	default:
	}
	if n := srv.Auth().Stats().Expired.Load(); n != 1 {
		t.Fatalf("Expired = %d, want 1", n)
	}
}

// hs256 signs claims (JSON) as an HS256 JWT.
func hs256(secret []byte, claims string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(m.Sum(nil))
}
