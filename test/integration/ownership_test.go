package integration

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/server"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Ownership of client ids and sessions (docs/security.md): devices dev-a
// and dev-b (passwords "secret-<name>") and the superuser ops, each
// allowed its own subtree devices/<username>/#.

const deviceACL = "allow both devices/${username}/#\n"

// ownedFiles writes the users and ACL files into dir and returns their
// paths.
func ownedFiles(t *testing.T, dir string) (usersFile, aclFile string) {
	t.Helper()
	users, usersFile := writeUsers(t, dir, "dev-a", "dev-b", "ops")
	ops, _ := users.Get("ops")
	ops.Superuser = true
	if err := auth.SaveUsers(usersFile, users); err != nil {
		t.Fatal(err)
	}
	aclFile = filepath.Join(dir, "acl")
	if err := os.WriteFile(aclFile, []byte(deviceACL), 0o600); err != nil {
		t.Fatal(err)
	}
	return usersFile, aclFile
}

// startOwned starts an in-process node with those files, no anonymous
// access and default deny; it returns the node, its address and the ACL
// file.
func startOwned(t *testing.T, mods ...func(*config.Config)) (srv *server.Server, addr, aclFile string) {
	t.Helper()
	dir := t.TempDir()
	usersFile, aclFile := ownedFiles(t, dir)
	srv = startBroker(t, append([]func(*config.Config){func(c *config.Config) {
		c.Auth.AllowAnonymous = false
		c.Auth.UsersFile, c.Auth.ACLFile, c.Auth.ACLDefault = usersFile, aclFile, "deny"
		c.Auth.WatchInterval = 0
	}}, mods...)...)
	return srv, tcpAddr(t, srv), aclFile
}

// login is a CONNECT as user with client id id; expiry > 0 asks for a
// persistent session (v5: Session Expiry; 3.1.1: clean session off).
func login(v packet.Version, id, user string, expiry uint32) *packet.Connect {
	cp := &packet.Connect{ClientID: id, CleanStart: expiry == 0, KeepAlive: 30}
	if user != "" {
		cp.UsernameFlag, cp.Username = true, user
		cp.PasswordFlag, cp.Password = true, []byte("secret-"+user)
	}
	if v == packet.V5 && expiry > 0 {
		cp.Props = sessionExpiry(expiry)
	}
	return cp
}

// connectAs connects a raw client and returns it with its CONNACK code.
func connectAs(t *testing.T, addr string, v packet.Version, cp *packet.Connect) (*rawConn, byte) {
	t.Helper()
	c := dialRaw(t, addr, v)
	return c, c.connect(cp).ReasonCode
}

// mosquittoRun runs a mosquitto client to completion and returns its output.
func mosquittoRun(t *testing.T, addr, tool string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed", tool)
	}
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

// TestTakeoverByAnotherIdentityRefused: device A, with its own password
// and B's client id, is refused (v5 0x87, 3.1.1 return code 5) by
// mosquitto_sub, Paho v3 and a raw v5 client; B stays connected; the
// commands queued for B while it is away stay for B; every attempt is
// counted and logged, through a real `culex serve`.
func TestTakeoverByAnotherIdentityRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	usersFile, aclFile := ownedFiles(t, dir)
	p := startCulex(t, filepath.Join(dir, "data"), "--auth.allow-anonymous", "false",
		"--auth.users-file", usersFile, "--auth.acl-file", aclFile, "--auth.acl-default", "deny",
		"--auth.watch-interval", "0s", "--sys-interval", "50ms")
	addr := p.addr

	b, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "dev-b", 3600))
	if rc != 0 {
		t.Fatalf("B connect: 0x%02x", rc)
	}
	if codes := b.subscribe(1, packet.Properties{}, rawSub("devices/dev-b/commands", 1)); codes[0] != 1 {
		t.Fatalf("B subscribe: %x", codes)
	}
	// A, live B: refused, and B is not kicked.
	if _, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "dev-a", 3600)); rc != packet.ErrNotAuthorized.Value {
		t.Errorf("A as dev-b (v5, B online): CONNACK 0x%02x, want 0x87", rc)
	}
	out, err := mosquittoRun(t, addr, "mosquitto_sub", "-V", "311", "-u", "dev-a", "-P", "secret-dev-a",
		"-i", "dev-b", "-c", "-t", "devices/dev-a/x", "-C", "1", "-W", "5")
	if err == nil || !strings.Contains(strings.ToLower(out), "not authori") {
		t.Errorf("mosquitto_sub as dev-a with B's id: %v %q, want refused, not authorised", err, out)
	}
	b.send(&packet.Pingreq{})
	expect[*packet.Pingresp](b)

	// B away: its commands queue; A (Paho 3.1.1) cannot take them.
	b.send(&packet.Disconnect{})
	b.mayClose(waitTimeout)
	ops, rc := connectAs(t, addr, packet.V5, login(packet.V5, "ops", "ops", 0))
	if rc != 0 {
		t.Fatalf("ops connect: 0x%02x", rc)
	}
	for i, cmd := range []string{"open", "close"} {
		ops.send(&packet.Publish{Topic: "devices/dev-b/commands", QoS: 1, PacketID: uint16(i + 1), Payload: []byte(cmd)})
		if ack := expect[*packet.Ack](ops); ack.ReasonCode != 0 {
			t.Fatalf("ops publish: 0x%02x", ack.ReasonCode)
		}
	}
	_, err = dialV3(t, "tcp://"+addr, "dev-b", false, func(o *mqtt.ClientOptions) {
		o.SetUsername("dev-a").SetPassword("secret-dev-a")
	})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authori") {
		t.Errorf("Paho 3.1.1 as dev-a with B's id: %v, want not authorized", err)
	}
	b2, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "dev-b", 3600))
	if rc != 0 {
		t.Fatalf("B reconnect: 0x%02x", rc)
	}
	for i, pub := range b2.publishes(2) {
		if want := []string{"open", "close"}[i]; string(pub.Payload) != want {
			t.Errorf("B's command %d: %q, want %q", i, pub.Payload, want)
		}
	}
	// Counted in $SYS, and logged with the client id, identity and address.
	ops.subscribe(2, packet.Properties{}, rawSub("$SYS/broker/clients/takeover_refused", 0))
	waitFor(t, waitTimeout, "$SYS takeover_refused = 3", func() bool {
		pk, _, err := ops.readPacket(waitTimeout)
		pub, ok := pk.(*packet.Publish)
		return err == nil && ok && string(pub.Payload) == "3"
	})
	logs := p.stderr.String()
	for _, want := range []string{"session takeover refused", "client_id=dev-b", "identity=dev-a", "owner=dev-b", "remote=127.0.0.1:"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestClientIDBinding: with auth.client_id_binding equal a device may use
// only its username as client id (others: v5 0x85, 3.1.1 return code 2,
// mosquitto "identifier rejected"); with prefix, ids starting with it. An
// anonymous client may only have an id assigned.
func TestClientIDBinding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode     string
		ok, nope []string // ids dev-a may and may not use
	}{
		{"equal", []string{"dev-a"}, []string{"dev-a-1", "dev-b", "x"}},
		{"prefix", []string{"dev-a", "dev-a-1", "dev-a/sensor"}, []string{"dev-b", "x-dev-a"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			srv, addr, _ := startOwned(t, func(c *config.Config) {
				c.Auth.ClientIDBinding = tc.mode
				c.Auth.AllowAnonymous, c.Auth.AllowAnonymousSet = true, true
			})
			for _, id := range tc.ok {
				if _, rc := connectAs(t, addr, packet.V5, login(packet.V5, id, "dev-a", 0)); rc != 0 {
					t.Errorf("dev-a as %q: CONNACK 0x%02x, want 0", id, rc)
				}
			}
			for _, id := range tc.nope {
				if _, rc := connectAs(t, addr, packet.V5, login(packet.V5, id, "dev-a", 0)); rc != packet.ErrClientIdentifierNotValid.Value {
					t.Errorf("v5 dev-a as %q: CONNACK 0x%02x, want 0x85", id, rc)
				}
				if _, rc := connectAs(t, addr, packet.V311, login(packet.V311, id, "dev-a", 0)); rc != 2 {
					t.Errorf("3.1.1 dev-a as %q: return code %d, want 2", id, rc)
				}
			}
			out, err := mosquittoRun(t, addr, "mosquitto_pub", "-u", "dev-a", "-P", "secret-dev-a",
				"-i", "dev-b", "-t", "devices/dev-a/x", "-m", "x")
			if err == nil || !strings.Contains(strings.ToLower(out), "identifier rejected") {
				t.Errorf("mosquitto_pub as dev-a with id dev-b: %v %q, want identifier rejected", err, out)
			}
			if _, rc := connectAs(t, addr, packet.V5, login(packet.V5, "anon-1", "", 0)); rc != packet.ErrClientIdentifierNotValid.Value {
				t.Errorf("anonymous with its own id: CONNACK 0x%02x, want 0x85", rc)
			}
			anon := dialRaw(t, addr, packet.V5)
			if ca := anon.connect(login(packet.V5, "", "", 0)); ca.ReasonCode != 0 || ca.Props.AssignedClientID == "" {
				t.Errorf("anonymous with an assigned id: CONNACK 0x%02x %q, want accepted", ca.ReasonCode, ca.Props.AssignedClientID)
			}
			if n, want := srv.Broker().Stats().BindingRefused, uint64(2*len(tc.nope)+2); n != want {
				t.Errorf("BindingRefused = %d, want %d", n, want)
			}
		})
	}
}

// TestSuperuserTakeover: a superuser is refused another's client id like
// anyone (0x87) unless auth.superuser_takeover is on; then it takes the
// session over (the device gets 0x8E), and the session stays the device's:
// the device takes it back once the superuser leaves.
func TestSuperuserTakeover(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		_, addr, _ := startOwned(t, func(c *config.Config) { c.Auth.SuperuserTakeover = on })
		b, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "dev-b", 3600))
		if rc != 0 {
			t.Fatalf("B connect: 0x%02x", rc)
		}
		ops, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "ops", 3600))
		if !on {
			if rc != packet.ErrNotAuthorized.Value {
				t.Errorf("superuser_takeover off: ops as dev-b: CONNACK 0x%02x, want 0x87", rc)
			}
			b.send(&packet.Pingreq{})
			expect[*packet.Pingresp](b)
			continue
		}
		if rc != 0 {
			t.Fatalf("superuser_takeover on: ops as dev-b: CONNACK 0x%02x, want 0", rc)
		}
		b.mustClose(waitTimeout, packet.ErrSessionTakenOver.Value)
		ops.send(&packet.Disconnect{})
		ops.mayClose(waitTimeout)
		b2 := dialRaw(t, addr, packet.V5)
		if ca := b2.connect(login(packet.V5, "dev-b", "dev-b", 3600)); ca.ReasonCode != 0 || !ca.SessionPresent {
			t.Errorf("B reclaiming its session: CONNACK 0x%02x present=%v, want 0 and present", ca.ReasonCode, ca.SessionPresent)
		}
	}
}

// TestRightRemovedWhileOfflineStopsDelivery: messages queued for, or in
// flight to, an offline session are checked again when it resumes: after
// an ACL reload denies their topic they are dropped (counted), not sent.
func TestRightRemovedWhileOfflineStopsDelivery(t *testing.T) {
	t.Parallel()
	srv, addr, acl := startOwned(t)
	b, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "dev-b", 3600))
	if rc != 0 {
		t.Fatalf("B connect: 0x%02x", rc)
	}
	b.subscribe(1, packet.Properties{}, rawSub("devices/dev-b/#", 1))
	ops, _ := connectAs(t, addr, packet.V5, login(packet.V5, "ops", "ops", 0))
	pub := func(pid uint16, topic, payload string) {
		t.Helper()
		ops.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: pid, Payload: []byte(payload)})
		if ack := expect[*packet.Ack](ops); ack.ReasonCode != 0 {
			t.Fatalf("ops publish %s: 0x%02x", topic, ack.ReasonCode)
		}
	}
	pub(1, "devices/dev-b/secret", "in-flight")
	if got := b.publishes(1); string(got[0].Payload) != "in-flight" {
		t.Fatalf("B got %q", got[0].Payload)
	}
	b.Close() // without PUBACK: it stays in flight
	waitClients(t, srv, 1)
	pub(2, "devices/dev-b/secret", "queued")
	pub(3, "devices/dev-b/ok", "marker")
	if err := os.WriteFile(acl, []byte("deny subscribe devices/+/secret\n"+deviceACL), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	denied := srv.Broker().Stats().Drops["not_authorized"]
	b2, rc := connectAs(t, addr, packet.V5, login(packet.V5, "dev-b", "dev-b", 3600))
	if rc != 0 {
		t.Fatalf("B reconnect: 0x%02x", rc)
	}
	for {
		p := b2.publishes(1)[0]
		if strings.HasSuffix(p.Topic, "/secret") {
			t.Errorf("B received %q on %s after its right was removed", p.Payload, p.Topic)
		}
		if string(p.Payload) == "marker" {
			break
		}
	}
	if n := srv.Broker().Stats().Drops["not_authorized"] - denied; n != 2 {
		t.Errorf("not_authorized drops at resume: %d, want 2", n)
	}
}

// TestWillReauthorizedWhenFired: a will allowed at CONNECT is not
// published when the ACL no longer allows it by the time it fires.
func TestWillReauthorizedWhenFired(t *testing.T) {
	t.Parallel()
	srv, addr, acl := startOwned(t)
	watch, _ := connectAs(t, addr, packet.V5, login(packet.V5, "ops-watch", "ops", 0))
	watch.subscribe(1, packet.Properties{}, rawSub("devices/#", 0))
	cp := login(packet.V311, "dev-a", "dev-a", 0)
	cp.WillFlag, cp.WillTopic, cp.WillPayload = true, "devices/dev-a/status", []byte("gone")
	a, rc := connectAs(t, addr, packet.V311, cp)
	if rc != 0 {
		t.Fatalf("A connect with a will: %d", rc)
	}
	if err := os.WriteFile(acl, []byte("allow subscribe devices/${username}/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	a.Close() // no DISCONNECT: the will fires
	waitClients(t, srv, 1)
	ops, _ := connectAs(t, addr, packet.V5, login(packet.V5, "ops", "ops", 0))
	ops.send(&packet.Publish{Topic: "devices/marker", Payload: []byte("marker")})
	if p := watch.publishes(1)[0]; p.Topic != "devices/marker" {
		t.Errorf("watcher got %s %q before the marker: the will fired without the right", p.Topic, p.Payload)
	}
}

// TestRestoredWillReauthorized: a delayed will that survives a restart is
// checked, when it fires, against the rights its client has then (its
// stored identity under the reloaded ACL): denied, it is dropped.
func TestRestoredWillReauthorized(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	usersFile, aclFile := ownedFiles(t, dir)
	start := func() *server.Server {
		return startBroker(t, func(c *config.Config) {
			c.DataDir = filepath.Join(dir, "data")
			c.Auth.AllowAnonymous = false
			c.Auth.UsersFile, c.Auth.ACLFile, c.Auth.ACLDefault = usersFile, aclFile, "deny"
			c.Auth.WatchInterval = 0
		})
	}
	srv := start()
	cp := login(packet.V5, "dev-a", "dev-a", 3600)
	cp.WillFlag, cp.WillTopic, cp.WillPayload = true, "devices/dev-a/status", []byte("gone")
	cp.WillProps.WillDelay = 2
	cp.WillProps.Set(packet.PropWillDelay)
	a, rc := connectAs(t, tcpAddr(t, srv), packet.V5, cp)
	if rc != 0 {
		t.Fatalf("A connect with a will: 0x%02x", rc)
	}
	a.Close() // the will waits for its delay
	waitClients(t, srv, 0)
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aclFile, []byte("allow subscribe devices/${username}/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv = start()
	addr := tcpAddr(t, srv)
	watch, _ := connectAs(t, addr, packet.V5, login(packet.V5, "ops-watch", "ops", 0))
	watch.subscribe(1, packet.Properties{}, rawSub("devices/#", 0))
	waitFor(t, waitTimeout, "the restored will to be refused", func() bool {
		return srv.Broker().Stats().Drops["not_authorized"] == 1
	})
	ops, _ := connectAs(t, addr, packet.V5, login(packet.V5, "ops", "ops", 0))
	ops.send(&packet.Publish{Topic: "devices/marker", Payload: []byte("marker")})
	if p := watch.publishes(1)[0]; p.Topic != "devices/marker" {
		t.Errorf("watcher got %s %q before the marker: the restored will fired without the right", p.Topic, p.Payload)
	}
}

// TestEnablingAuthKeepsAnonymousSessions: a persistent session a device
// made while `culex serve` ran without auth backends (owned by anonymous)
// is claimed by the device when it logs in after a users file is added:
// accepted, session present, the commands queued while it was away
// delivered.
func TestEnablingAuthKeepsAnonymousSessions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	p := startCulex(t, data)
	b, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-b", "", 3600))
	if rc != 0 {
		t.Fatalf("anonymous dev-b connect: 0x%02x", rc)
	}
	if codes := b.subscribe(1, packet.Properties{}, rawSub("devices/dev-b/commands", 1)); codes[0] != 1 {
		t.Fatalf("dev-b subscribe: %x", codes)
	}
	b.send(&packet.Disconnect{})
	b.mayClose(waitTimeout)
	ops, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "ops", "", 0))
	if rc != 0 {
		t.Fatalf("anonymous ops connect: 0x%02x", rc)
	}
	for i, cmd := range []string{"open", "close"} {
		ops.send(&packet.Publish{Topic: "devices/dev-b/commands", QoS: 1, PacketID: uint16(i + 1), Payload: []byte(cmd)})
		if ack := expect[*packet.Ack](ops); ack.ReasonCode != 0 {
			t.Fatalf("ops publish: 0x%02x", ack.ReasonCode)
		}
	}
	ops.Close()
	p.stop(syscall.SIGTERM)

	usersFile, aclFile := ownedFiles(t, dir)
	p = startCulex(t, data, "--auth.users-file", usersFile, "--auth.acl-file", aclFile, "--auth.watch-interval", "0s")
	b2 := dialRaw(t, p.addr, packet.V5)
	ack := b2.connect(login(packet.V5, "dev-b", "dev-b", 3600))
	if ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("dev-b with its username: CONNACK 0x%02x, session present %v; want 0x00 and true", ack.ReasonCode, ack.SessionPresent)
	}
	for i, pub := range b2.publishes(2) {
		if want := []string{"open", "close"}[i]; string(pub.Payload) != want {
			t.Errorf("dev-b's command %d: %q, want %q", i, pub.Payload, want)
		}
	}
	waitFor(t, waitTimeout, "the claim logged", func() bool {
		return strings.Contains(p.stderr.String(), "anonymous session claimed by an identity")
	})
}
