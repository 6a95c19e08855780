package auth_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"
)

// The device scenario with real peers: mosquitto_pub/mosquitto_sub and the
// Paho v3 and v5 clients against a broker that uses the auth Service
// through its public API. e2e_server_test.go runs the same scenarios
// through internal/server.

const e2eWait = 10 * time.Second

// deviceFiles writes the scenario's users (dev-a/sa, dev-b/sb) and ACL
// into cfg's files.
func deviceFiles(t *testing.T, cfg *config.Auth) {
	t.Helper()
	dir := t.TempDir()
	u := auth.NewUsers()
	for _, p := range [][2]string{{"dev-a", "sa"}, {"dev-b", "sb"}} {
		h, err := auth.HashBcrypt(p[1], bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		u.Put(&auth.User{Name: p[0], Hash: h})
	}
	cfg.AllowAnonymous = false
	cfg.UsersFile = filepath.Join(dir, "users")
	cfg.ACLFile = filepath.Join(dir, "acl")
	cfg.ACLDefault = "deny"
	cfg.WatchInterval = 20 * time.Millisecond
	if err := auth.SaveUsers(cfg.UsersFile, u); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.ACLFile, []byte("allow both devices/${username}/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// device is a broker under test.
type device struct {
	addr  string
	users string
	// subscriptions reports the broker's subscription count.
	subscriptions func() int64
}

// startDirect serves a broker with the Service applied on a loopback port.
func startDirect(t *testing.T) *device {
	t.Helper()
	cfg := config.Default().Auth
	deviceFiles(t, &cfg)
	svc, err := auth.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	opts := broker.Options{Config: config.Default().MQTT}
	svc.Apply(&opts)
	t.Cleanup(func() { svc.Close() }) // after the broker's shutdown
	addr, b := brokertest.Serve(t, opts)
	return &device{addr: addr, users: cfg.UsersFile,
		subscriptions: func() int64 { return b.Stats().Subscriptions }}
}

func (d *device) mosquitto(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	path := brokertest.Tool(t, tool, "mosquitto-clients")
	host, port, _ := net.SplitHostPort(d.addr)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

func pollFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mosquittoIsolation: device A cannot write to or read from device B's
// topics with mosquitto_pub/mosquitto_sub, by direct topic, retained
// message, will message, wildcard or shared subscription.
func mosquittoIsolation(t *testing.T, d *device) {
	brokertest.Tool(t, "mosquitto_sub", "mosquitto-clients")
	// B listens on its own subtree and stops at the first message: it must
	// be B's own marker, not anything A sent.
	got := make(chan string, 1)
	go func() {
		out, _ := d.mosquitto(t, "mosquitto_sub", "-V", "5", "-u", "dev-b", "-P", "sb", "-i", "dev-b",
			"-t", "devices/dev-b/#", "-v", "-C", "1", "-W", "10")
		got <- out
	}()
	pollFor(t, "B's subscription", func() bool { return d.subscriptions() >= 1 })
	for _, v := range []string{"5", "311"} {
		d.mosquitto(t, "mosquitto_pub", "-V", v, "-u", "dev-a", "-P", "sa", "-i", "dev-a",
			"-t", "devices/dev-b/commands", "-q", "1", "-m", "from-a")
		d.mosquitto(t, "mosquitto_pub", "-V", v, "-u", "dev-a", "-P", "sa", "-i", "dev-a",
			"-t", "devices/dev-b/state", "-r", "-q", "1", "-m", "from-a")
		if out, err := d.mosquitto(t, "mosquitto_pub", "-V", v, "-u", "dev-a", "-P", "sa", "-i", "dev-a-w",
			"--will-topic", "devices/dev-b/commands", "--will-payload", "from-a",
			"-t", "devices/dev-a/x", "-m", "x"); err == nil {
			t.Errorf("v%s connect with a will on B's topic succeeded: %s", v, out)
		}
	}
	d.mosquitto(t, "mosquitto_pub", "-V", "5", "-u", "dev-b", "-P", "sb", "-i", "dev-b-pub",
		"-t", "devices/dev-b/marker", "-m", "marker")
	if out := <-got; strings.TrimSpace(out) != "devices/dev-b/marker marker" {
		t.Errorf("B received %q, want only its marker", out)
	}
	for _, f := range []string{"devices/dev-b/#", "devices/+/state", "#", "$share/g/devices/dev-b/#"} {
		out, _ := d.mosquitto(t, "mosquitto_sub", "-V", "5", "-u", "dev-a", "-P", "sa", "-i", "dev-a-s",
			"-t", f, "-v", "-C", "1", "-W", "1")
		if strings.Contains(out, "from-a") || strings.Contains(out, "marker") {
			t.Errorf("A read B's messages through %q: %q", f, out)
		}
		if !strings.Contains(out, "denied") {
			t.Errorf("mosquitto_sub %q as A was not denied: %q", f, out)
		}
	}
	// A's own subtree works.
	out, err := d.mosquitto(t, "mosquitto_pub", "-V", "5", "-u", "dev-a", "-P", "sa", "-i", "dev-a",
		"-t", "devices/dev-a/state", "-r", "-q", "1", "-m", "mine")
	if err != nil {
		t.Fatalf("A publishing its own state: %v %s", err, out)
	}
	if out, _ := d.mosquitto(t, "mosquitto_sub", "-V", "311", "-u", "dev-a", "-P", "sa", "-i", "dev-a-s",
		"-t", "devices/dev-a/#", "-v", "-C", "1", "-W", "5"); strings.TrimSpace(out) != "devices/dev-a/state mine" {
		t.Errorf("A reading its own retained state: %q", out)
	}
}

// pahoIsolation: the same with the Paho v3 and v5 clients, then revocation:
// removing dev-a from the users file disconnects it.
func pahoIsolation(t *testing.T, d *device, revokeDisconnects bool) {
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + d.addr).SetClientID("dev-a").
		SetUsername("dev-a").SetPassword("sa").SetAutoReconnect(false).SetConnectTimeout(e2eWait)
	v3 := mqtt.NewClient(opts)
	if tok := v3.Connect(); !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		t.Fatalf("v3 connect: %v", tok.Error())
	}
	defer v3.Disconnect(100)
	for _, f := range []string{"devices/dev-b/commands", "devices/+/commands", "$share/g/devices/dev-b/#"} {
		tok := v3.Subscribe(f, 1, nil)
		if !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
			t.Fatalf("v3 subscribe %q: no SUBACK within %v (%v)", f, e2eWait, tok.Error())
		}
		// Paho keys a shared subscription's result by its inner filter.
		res := tok.(*mqtt.SubscribeToken).Result()
		if len(res) != 1 {
			t.Errorf("v3 subscribe %q: results %v, want one", f, res)
		}
		for _, rc := range res {
			if rc != 0x80 {
				t.Errorf("v3 subscribe %q: 0x%02x, want 0x80", f, rc)
			}
		}
	}
	willOpts := mqtt.NewClientOptions().AddBroker("tcp://"+d.addr).SetClientID("dev-a-w").
		SetUsername("dev-a").SetPassword("sa").SetAutoReconnect(false).SetConnectTimeout(e2eWait).
		SetWill("devices/dev-b/commands", "x", 1, false)
	wc := mqtt.NewClient(willOpts)
	if tok := wc.Connect(); tok.WaitTimeout(e2eWait) && tok.Error() == nil {
		t.Error("v3 connect with a will on B's topic succeeded")
		wc.Disconnect(100)
	}

	conn, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v5 := paho.NewClient(paho.ClientConfig{ClientID: "dev-a-5", Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if _, err := v5.Connect(ctx, &paho.Connect{ClientID: "dev-a-5", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "dev-a", PasswordFlag: true, Password: []byte("sa")}); err != nil {
		t.Fatalf("v5 connect: %v", err)
	}
	defer v5.Disconnect(&paho.Disconnect{})
	sa, _ := v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/dev-b/#", QoS: 1}, {Topic: "$share/g/devices/+/state", QoS: 1}, {Topic: "devices/dev-a/#", QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 3 || sa.Reasons[0] != 0x87 || sa.Reasons[1] != 0x87 || sa.Reasons[2] != 1 {
		t.Errorf("v5 SUBACK %+v, want 0x87 0x87 0x01", sa)
	}
	pr, _ := v5.Publish(ctx, &paho.Publish{Topic: "devices/dev-b/commands", QoS: 1, Payload: []byte("x")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("v5 PUBACK %+v, want 0x87", pr)
	}
	if !revokeDisconnects {
		return
	}
	u, _ := auth.LoadUsers(d.users)
	u.Delete("dev-a")
	if err := auth.SaveUsers(d.users, u); err != nil {
		t.Fatal(err)
	}
	pollFor(t, "the revoked device's disconnection", func() bool { return !v3.IsConnectionOpen() })
}

func TestMosquittoDeviceIsolation(t *testing.T) { mosquittoIsolation(t, startDirect(t)) }

// TestPahoDeviceIsolation cannot check the disconnection on revocation:
// the broker has no disconnect API for Service.SetDisconnect yet.
func TestPahoDeviceIsolation(t *testing.T) { pahoIsolation(t, startDirect(t), false) }
