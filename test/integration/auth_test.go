package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestUsersFileAndACLThroughClients proves password authentication and
// topic ACLs through real clients: a users-file user connects with Paho v5,
// Paho v3.1.1 and mosquitto_pub; a wrong password is refused (v5 0x86, 3.1.1
// 0x04); the ACL's per-user rule lets a device publish only its own
// telemetry (v5 PUBACK 0x87 otherwise) and receive only its own commands.
func TestUsersFileAndACLThroughClients(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, usersFile := writeUsers(t, dir, "dev1", "dev2")
	aclFile := filepath.Join(dir, "acl")
	acl := "allow publish devices/${username}/telemetry\nallow subscribe devices/${username}/commands\nallow both ops/#\ndeny both #\n"
	if err := os.WriteFile(aclFile, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startBroker(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = false
		c.Auth.UsersFile = usersFile
		c.Auth.ACLFile = aclFile
	})
	addr := tcpAddr(t, srv)
	login := passwordLogin

	dev1 := connectV5(t, addr, login("dev1", "dev1", "secret-dev1"))
	if _, ca, err := dialV5(t, addr, login("bad", "dev1", "wrong"), nil); err == nil || ca == nil || ca.ReasonCode != 0x86 {
		t.Errorf("wrong password: CONNACK %+v err %v, want 0x86", ca, err)
	}
	raw := dialRaw(t, addr, packet.V311)
	if ca := raw.connect(&packet.Connect{ClientID: "bad3", CleanStart: true, KeepAlive: 30, UsernameFlag: true, Username: "dev2", PasswordFlag: true, Password: []byte("nope")}); ca.ReasonCode != 0x04 {
		t.Errorf("3.1.1 wrong password: CONNACK 0x%02x, want 0x04", ca.ReasonCode)
	}

	ops := connectV3(t, srv.URL("tcp"), "ops", true, func(o *mqtt.ClientOptions) {
		o.SetUsername("dev2").SetPassword("secret-dev2")
	})
	ops.subscribe("devices/+/telemetry", 1) // refused by the ACL: granted 0x80
	ops.subscribe("ops/#", 1)

	sa, _ := dev1.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/dev1/commands", QoS: 1}, {Topic: "devices/dev2/commands", QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 2 || sa.Reasons[0] != 1 || sa.Reasons[1] != 0x87 {
		t.Errorf("dev1 SUBACK %+v, want [01 87]", sa)
	}
	if pr, err := dev1.Publish(t.Context(), &paho.Publish{Topic: "devices/dev2/telemetry", QoS: 1, Payload: []byte("spoof")}); err == nil || pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("dev1 publishing as dev2: response %+v err %v, want PUBACK 0x87", pr, err)
	}
	dev1.publish("devices/dev1/telemetry", 1, "ok")
	mosquittoPub(t, addr, "-u", "dev2", "-P", "secret-dev2", "-q", "1", "-t", "ops/from-mosquitto", "-m", "authenticated")
	if m := recv1(t, ops.msgs); m.Topic != "ops/from-mosquitto" {
		t.Errorf("ops got %v; the ACL should have kept devices/+/telemetry from it", m)
	}
}

// writeUsers writes a users file in dir whose users have the password
// "secret-" + their name, and returns it with its path.
func writeUsers(t *testing.T, dir string, names ...string) (*auth.Users, string) {
	t.Helper()
	users := auth.NewUsers()
	for _, name := range names {
		h, err := auth.HashBcrypt("secret-"+name, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := users.Put(&auth.User{Name: name, Hash: h}); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "users")
	if err := auth.SaveUsers(file, users); err != nil {
		t.Fatal(err)
	}
	return users, file
}

// TestSIGHUPRevokesRemovedDevice proves the operator's path for revoking a
// device in a running `culex serve`: remove it from the users file, send
// SIGHUP, and its live connection is cut (v5: DISCONNECT 0x87) while other
// devices stay connected. File watching is off, so only the signal reloads.
func TestSIGHUPRevokesRemovedDevice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users, usersFile := writeUsers(t, dir, "dev1", "dev2")
	p := startCulex(t, filepath.Join(dir, "data"), "--auth.allow-anonymous", "false",
		"--auth.users-file", usersFile, "--auth.watch-interval", "0s")
	login := func(name string) *rawConn {
		c := dialRaw(t, p.addr, packet.V5)
		c.mustConnect(&packet.Connect{ClientID: name, CleanStart: true, KeepAlive: 60,
			UsernameFlag: true, Username: name, PasswordFlag: true, Password: []byte("secret-" + name)})
		return c
	}
	dev1, dev2 := login("dev1"), login("dev2")
	users.Delete("dev1") // what `culex users rm dev1` writes
	if err := auth.SaveUsers(usersFile, users); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	dev1.mustClose(waitTimeout, packet.ErrNotAuthorized.Value)
	dev2.send(&packet.Pingreq{})
	expect[*packet.Pingresp](dev2)
	refused := dialRaw(t, p.addr, packet.V5)
	if ca := refused.connect(&packet.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: "dev1", PasswordFlag: true, Password: []byte("secret-dev1")}); ca.ReasonCode != packet.ErrBadUsernameOrPassword.Value {
		t.Errorf("revoked device reconnecting: CONNACK 0x%02x, want 0x86", ca.ReasonCode)
	}
}
