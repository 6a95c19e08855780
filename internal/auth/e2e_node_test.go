// Issue 12's security scenarios through a whole node (internal/server)
// and the mosquitto clients: ACL semantics of wildcard subscriptions, and
// the defaults that a users or ACL file switches on.
package auth_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testlog"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/crypto/bcrypt"
)

// bcryptUsers makes name, password pairs into users; a name starting with
// "!" is a superuser.
func bcryptUsers(t *testing.T, pairs ...string) *auth.Users {
	t.Helper()
	u := auth.NewUsers()
	for i := 0; i+1 < len(pairs); i += 2 {
		h, err := auth.HashBcrypt(pairs[i+1], bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		name, super := strings.CutPrefix(pairs[i], "!")
		u.Put(&auth.User{Name: name, Hash: h, Superuser: super})
	}
	return u
}

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
	if err := auth.SaveUsers(cfg.Auth.UsersFile, bcryptUsers(t, users...)); err != nil {
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

// pahoConnect connects a v5 Paho client with a clean start and fails the
// test unless the CONNACK is a success; the channel receives the server's
// DISCONNECT.
func pahoConnect(t *testing.T, addr, id, user, password string) (*paho.Client, chan *paho.Disconnect) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	gone := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnServerDisconnect: func(d *paho.Disconnect) { gone <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(password)})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %v", id, ack, err)
	}
	return c, gone
}

// TestE2EDemotedSuperuserLosesRights: a users-file change that takes a
// connected client's superuser rights away ends them at once: the client
// is disconnected (0x87), and when it comes back it is judged by the rules.
func TestE2EDemotedSuperuserLosesRights(t *testing.T) {
	d := startNode(t, "allow both devices/${username}/#\n",
		func(c *config.Config) { c.Auth.ACLDefault = "deny"; c.Auth.AllowAnonymous = false },
		"!root", "sr", "dev-b", "sb")
	publish := func(c *paho.Client) byte {
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		defer cancel()
		pr, err := c.Publish(ctx, &paho.Publish{Topic: "devices/dev-b/cmd", QoS: 1, Payload: []byte("x")})
		if pr == nil {
			t.Fatalf("publish: %v", err)
		}
		return pr.ReasonCode
	}
	root, gone := pahoConnect(t, d.addr, "ops-console", "root", "sr")
	if rc := publish(root); rc != 0 {
		t.Fatalf("superuser publish outside the rules: 0x%02x", rc)
	}
	u, err := auth.LoadUsers(d.users)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := u.Get("root")
	u.Put(&auth.User{Name: "root", Hash: x.Hash}) // the same password, no longer a superuser
	if err := auth.SaveUsers(d.users, u); err != nil {
		t.Fatal(err)
	}
	select {
	case dc := <-gone:
		if dc.ReasonCode != 0x87 {
			t.Errorf("DISCONNECT 0x%02x, want 0x87", dc.ReasonCode)
		}
	case <-time.After(e2eWait):
		t.Fatal("the demoted superuser is still connected")
	}
	again, _ := pahoConnect(t, d.addr, "ops-console-2", "root", "sr")
	if rc := publish(again); rc != 0x87 {
		t.Errorf("demoted user's publish outside its rules: 0x%02x, want 0x87", rc)
	}
}

// TestE2ESafeDefaults: a config file that sets a users file and an ACL
// file and leaves allow_anonymous and acl_default out refuses anonymous
// clients (mosquitto_pub without credentials), and its ACL of allow rules
// only denies everything else; the start-up log says so.
func TestE2ESafeDefaults(t *testing.T) {
	dir := t.TempDir()
	usersFile, aclFile, confFile := filepath.Join(dir, "users"), filepath.Join(dir, "acl"), filepath.Join(dir, "culex.yaml")
	if err := auth.SaveUsers(usersFile, bcryptUsers(t, "dev-a", "sa")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aclFile, []byte("allow both devices/${username}/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := "listeners: [tcp://127.0.0.1:0]\ndata_dir: \"\"\nsys_interval: 0s\nauth:\n  users_file: " + usersFile +
		"\n  acl_file: " + aclFile + "\n"
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("serve", []string{"-c", confFile}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer // the node's goroutines log on while the test reads
	srv := runServerLog(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if want := "allow_anonymous=false allow_anonymous_from=\"default: on without an auth backend, off with one\" acl_default=deny"; !strings.Contains(logs.String(), want) {
		t.Errorf("start-up log lacks %q:\n%s", want, logs.String())
	}
	if strings.Contains(logs.String(), "level=WARN msg=\"auth:") {
		t.Errorf("start-up log warns about a safe setup:\n%s", logs.String())
	}
	addr, _ := url.Parse(srv.URL("tcp"))
	d := &device{addr: addr.Host}
	for _, v := range []string{"5", "311"} {
		out, err := d.mosquitto(t, "mosquitto_pub", "-V", v, "-i", "anon", "-t", "devices/dev-a/cmd", "-m", "x")
		if err == nil || !strings.Contains(strings.ToLower(out), "not authori") {
			t.Errorf("v%s anonymous publish: err %v, output %q; want refused as not authorised", v, err, out)
		}
	}
	out, _ := d.mosquitto(t, "mosquitto_sub", "-V", "5", "-u", "dev-a", "-P", "sa", "-i", "dev-a",
		"-t", "other/#", "-C", "1", "-W", "5")
	if !strings.Contains(out, "denied") {
		t.Errorf("a topic no allow rule names was granted: %q", out)
	}
	if out, err := d.mosquitto(t, "mosquitto_pub", "-V", "5", "-u", "dev-a", "-P", "sa", "-i", "dev-a",
		"-q", "1", "-t", "devices/dev-a/state", "-m", "ok"); err != nil {
		t.Errorf("the allowed topic: %v %s", err, out)
	}
}
