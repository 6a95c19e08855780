// Issue 12's security scenarios through a whole node (internal/server)
// and the mosquitto clients: ACL semantics of wildcard subscriptions, and
// the defaults that a users or ACL file switches on.
package auth_test

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/config"
	"golang.org/x/crypto/bcrypt"
)

// startNode serves a node whose users file holds users (name, password
// pairs) and whose ACL file holds acl; mod may change the config before
// the node starts (nil: keep the defaults for everything else).
func startNode(t *testing.T, acl string, mod func(*config.Config), users ...string) *device {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir, cfg.SysInterval = "", 0
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}}
	cfg.Auth.UsersFile = filepath.Join(dir, "users")
	cfg.Auth.ACLFile = filepath.Join(dir, "acl")
	cfg.Auth.WatchInterval = 20 * time.Millisecond
	u := auth.NewUsers()
	for i := 0; i+1 < len(users); i += 2 {
		h, err := auth.HashBcrypt(users[i+1], bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		u.Put(&auth.User{Name: users[i], Hash: h})
	}
	if err := auth.SaveUsers(cfg.Auth.UsersFile, u); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Auth.ACLFile, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	srv := runServer(t, cfg)
	addr, err := url.Parse(srv.URL("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	return &device{addr: addr.Host, users: cfg.Auth.UsersFile,
		subscriptions: func() int64 { return srv.Broker().Stats().Subscriptions }}
}

// TestE2EWildcardSubscriptionSkipsDeniedTopics: with `deny subscribe
// devices/+/secret`, an operator's mosquitto_sub on devices/# is granted
// and receives devices/dev-a/temp but not devices/dev-a/secret, neither
// retained nor live; a subscription the deny rule covers whole is refused.
func TestE2EWildcardSubscriptionSkipsDeniedTopics(t *testing.T) {
	d := startNode(t, `
deny subscribe devices/+/secret
allow both devices/${username}/#
user ops
allow subscribe devices/#
`, func(c *config.Config) { c.Auth.ACLDefault = "deny"; c.Auth.AllowAnonymous = false },
		"dev-a", "sa", "ops", "so")
	pub := func(topic, msg string, retain bool) {
		t.Helper()
		args := []string{"-V", "5", "-u", "dev-a", "-P", "sa", "-i", "dev-a", "-q", "1", "-t", topic, "-m", msg}
		if retain {
			args = append(args, "-r")
		}
		if out, err := d.mosquitto(t, "mosquitto_pub", args...); err != nil {
			t.Fatalf("publish %s: %v %s", topic, err, out)
		}
	}
	pub("devices/dev-a/secret", "retained-secret", true)

	got := make(chan string, 1)
	go func() {
		out, _ := d.mosquitto(t, "mosquitto_sub", "-V", "5", "-u", "ops", "-P", "so", "-i", "ops",
			"-t", "devices/#", "-v", "-C", "2", "-W", "10")
		got <- out
	}()
	pollFor(t, "the operator's subscription", func() bool { return d.subscriptions() >= 1 })
	pub("devices/dev-a/secret", "live-secret", false)
	pub("devices/dev-a/temp", "21.5", false)
	pub("devices/dev-a/marker", "marker", false) // the second message, if no secret came
	want := "devices/dev-a/temp 21.5\ndevices/dev-a/marker marker"
	if out := strings.TrimSpace(<-got); out != want {
		t.Errorf("mosquitto_sub devices/# received %q, want %q", out, want)
	}
	for _, f := range []string{"devices/+/secret", "devices/dev-a/secret"} {
		out, _ := d.mosquitto(t, "mosquitto_sub", "-V", "5", "-u", "ops", "-P", "so", "-i", "ops-2",
			"-t", f, "-C", "1", "-W", "5")
		if !strings.Contains(out, "denied") {
			t.Errorf("mosquitto_sub %q was not denied: %q", f, out)
		}
	}
}
