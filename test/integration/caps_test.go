package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestMaxSessions: at mqtt.max_sessions persistent sessions a CONNECT that
// would create one more is refused (v5 0x97, 3.1.1 return code 3,
// mosquitto "broker unavailable"); clean sessions and resuming an existing
// session still work, and a session that ends frees its slot.
func TestMaxSessions(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxSessions = 2 })
	addr := tcpAddr(t, srv)
	persistent := func(v packet.Version, id string) *packet.Connect {
		cp := rawConnect(id, false)
		if v == packet.V5 {
			cp.Props = sessionExpiry(300)
		}
		return cp
	}
	p1 := dialRaw(t, addr, packet.V5)
	p1.mustConnect(persistent(packet.V5, "p1"))
	dialRaw(t, addr, packet.V311).mustConnect(persistent(packet.V311, "p2"))
	if ca := dialRaw(t, addr, packet.V5).connect(persistent(packet.V5, "p3")); ca.ReasonCode != packet.ErrQuotaExceeded.Value {
		t.Errorf("v5 third persistent session: CONNACK 0x%02x, want 0x97", ca.ReasonCode)
	}
	if ca := dialRaw(t, addr, packet.V311).connect(persistent(packet.V311, "p4")); ca.ReasonCode != 3 {
		t.Errorf("3.1.1 third persistent session: return code %d, want 3", ca.ReasonCode)
	}
	out, err := mosquittoRun(t, addr, "mosquitto_sub", "-V", "311", "-c", "-i", "p5", "-t", "x", "-C", "1", "-W", "5")
	if err == nil || !strings.Contains(strings.ToLower(out), "unavailable") {
		t.Errorf("mosquitto_sub -c at the cap: %v %q, want broker unavailable", err, out)
	}
	dialRaw(t, addr, packet.V5).mustConnect(rawConnect("clean", true))
	p1.send(&packet.Disconnect{})
	p1.mayClose(waitTimeout)
	if ca := dialRaw(t, addr, packet.V5).mustConnect(persistent(packet.V5, "p1")); !ca.SessionPresent {
		t.Error("resuming p1 at the cap: no session present")
	}
	// p2 comes back with a clean session: its persistent one ends.
	dialRaw(t, addr, packet.V311).mustConnect(rawConnect("p2", true))
	dialRaw(t, addr, packet.V5).mustConnect(persistent(packet.V5, "p3"))
	st := srv.Broker().Stats()
	if st.SessionsRefused != 3 || st.PersistentSessions != 2 {
		t.Errorf("SessionsRefused %d PersistentSessions %d, want 3 and 2", st.SessionsRefused, st.PersistentSessions)
	}
}

// TestMaxRetained: beyond mqtt.max_retained_messages (or _bytes) a
// retained message for a new topic is delivered to live subscribers but
// not stored; replacing a stored one works; refusals are counted.
func TestMaxRetained(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.MQTT.MaxRetainedMessages = 2
		c.MQTT.MaxPacketSize = 1200
		c.MQTT.MaxRetainedBytes = 2048
	})
	addr := tcpAddr(t, srv)
	live := dialRaw(t, addr, packet.V5)
	live.mustConnect(rawConnect("live", true))
	live.subscribe(1, packet.Properties{}, rawSub("r/#", 0))
	pub := dialRaw(t, addr, packet.V5)
	pub.mustConnect(rawConnect("pub", true))
	for _, tp := range []string{"r/a", "r/b", "r/c", "r/a"} {
		pub.send(&packet.Publish{Topic: tp, Retain: true, Payload: []byte("v-" + tp)})
		if got := live.publishes(1)[0]; got.Topic != tp {
			t.Fatalf("live subscriber got %s, want %s", got.Topic, tp)
		}
	}
	// Each SUBSCRIBE's retained messages come before the next SUBACK.
	late := dialRaw(t, addr, packet.V5)
	late.mustConnect(rawConnect("late", true))
	late.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{rawSub("r/c", 0)}})
	late.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{rawSub("r/a", 0)}})
	for {
		p, _, err := late.readPacket(waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if pp, ok := p.(*packet.Publish); ok {
			if pp.Topic == "r/c" {
				t.Errorf("r/c was stored beyond max_retained_messages")
			}
			if pp.Topic == "r/a" {
				break
			}
		}
	}
	if st := srv.Broker().Stats(); st.Retained != 2 || st.RetainedRefused != 1 {
		t.Errorf("Retained %d RetainedRefused %d, want 2 and 1", st.Retained, st.RetainedRefused)
	}
	// Bytes: r/b grows to 1000 bytes, then r/a cannot (over 2048 in all).
	big := strings.Repeat("x", 1000)
	pub.send(&packet.Publish{Topic: "r/b", Retain: true, Payload: []byte(big)})
	pub.send(&packet.Publish{Topic: "r/a", Retain: true, Payload: []byte(big + big[:100])})
	live.publishes(2)
	if st := srv.Broker().Stats(); st.RetainedRefused != 2 {
		t.Errorf("RetainedRefused %d after going over max_retained_bytes, want 2", st.RetainedRefused)
	}
}

// TestMaxQueuedBytes: a session's queue holds at most mqtt.max_queued_bytes
// of messages (topics, payloads, properties); over it queue_overflow
// applies and each drop is counted under queue_full.
func TestMaxQueuedBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy string
		want   []string
	}{
		{"drop_new", []string{"q/0", "q/1"}},
		{"drop_oldest", []string{"q/1", "q/2"}},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			srv := startBroker(t, func(c *config.Config) {
				c.MQTT.MaxPacketSize = 4096
				c.MQTT.MaxQueuedBytes = 4096
				c.MQTT.QueueOverflow = tc.policy
			})
			addr := tcpAddr(t, srv)
			c := connectV5(t, addr, v5Connect("q", false, 300))
			c.subscribe(sub("q/#", 1), sub("marker", 0))
			c.disconnect(0, nil)
			waitClients(t, srv, 0)
			p := connectV5(t, addr, v5Connect("p", true, 0))
			payload := strings.Repeat("x", 1500) // two fit in 4096, three do not
			for i := range 3 {
				p.publish(fmt.Sprintf("q/%d", i), 1, payload)
			}
			c = connectV5(t, addr, v5Connect("q", false, 300))
			p.publish("marker", 0, "m")
			var got []string
			for _, m := range recvUntil(t, c.msgs, "marker") {
				got = append(got, m.Topic)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("%s: delivered %v, want %v", tc.policy, got, tc.want)
			}
			if d := srv.Broker().Stats().Drops["queue_full"]; d != 1 {
				t.Errorf("%s: queue_full drops = %d, want 1", tc.policy, d)
			}
		})
	}
}

// bigProps are PUBLISH properties of about n bytes: user properties, a
// content type and correlation data.
func bigProps(n int) packet.Properties {
	p := packet.Properties{ContentType: "text/plain", CorrelationData: []byte("corr")}
	p.User = []packet.UserProperty{{Key: "pad", Value: strings.Repeat("u", n)}}
	p.Set(packet.PropUser)
	return p
}

// TestCapsCountProperties: mqtt.max_retained_bytes and max_queued_bytes
// count a message's properties, not only its topic and payload: small
// messages with large user properties go over them.
func TestCapsCountProperties(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.MQTT.MaxPacketSize = 1000
		c.MQTT.MaxRetainedBytes = 1000
		c.MQTT.MaxQueuedBytes = 1000
	})
	addr := tcpAddr(t, srv)
	q := dialRaw(t, addr, packet.V5)
	q.mustConnect(login(packet.V5, "q", "", 300))
	q.subscribe(1, packet.Properties{}, rawSub("q/#", 1))
	q.send(&packet.Disconnect{})
	q.mayClose(waitTimeout)
	waitClients(t, srv, 0)

	pub := dialRaw(t, addr, packet.V5)
	pub.mustConnect(rawConnect("pub", true))
	// About 450 bytes each (5 of topic and payload): two fit in 1000.
	for i := range 3 {
		pub.send(&packet.Publish{Topic: fmt.Sprintf("r/%d", i), Retain: true, Payload: []byte("v"), Props: bigProps(400)})
	}
	for i := range 3 {
		pub.send(&packet.Publish{Topic: fmt.Sprintf("q/%d", i), QoS: 1, PacketID: uint16(i + 1), Payload: []byte("v"), Props: bigProps(400)})
		expect[*packet.Ack](pub)
	}
	if st := srv.Broker().Stats(); st.Retained != 2 || st.RetainedRefused != 1 {
		t.Errorf("Retained %d RetainedRefused %d, want 2 and 1", st.Retained, st.RetainedRefused)
	}
	if d := srv.Broker().Stats().Drops["queue_full"]; d != 1 {
		t.Errorf("queue_full drops = %d, want 1", d)
	}
}

// TestMaxSessionsPerIdentity: one identity owns at most
// mqtt.max_sessions_per_identity persistent sessions, counted again from
// the store after a restart; resuming its own sessions, clean sessions and
// other identities are not refused, and ending a session frees its slot.
func TestMaxSessionsPerIdentity(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	usersFile, aclFile := ownedFiles(t, dir)
	args := []string{"--auth.users-file", usersFile, "--auth.acl-file", aclFile,
		"--auth.watch-interval", "0s", "--mqtt.max-sessions-per-identity", "2"}
	p := startCulex(t, data, args...)
	for _, id := range []string{"dev-a/1", "dev-a/2"} {
		c, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, id, "dev-a", 3600))
		if rc != 0 {
			t.Fatalf("dev-a as %s: CONNACK 0x%02x", id, rc)
		}
		c.Close()
	}
	p.stop(syscall.SIGTERM)
	p = startCulex(t, data, args...)

	if _, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-a/3", "dev-a", 3600)); rc != packet.ErrQuotaExceeded.Value {
		t.Errorf("dev-a's third persistent session after a restart: CONNACK 0x%02x, want 0x97", rc)
	}
	if _, rc := connectAs(t, p.addr, packet.V311, login(packet.V311, "dev-a/3", "dev-a", 1)); rc != 3 {
		t.Errorf("3.1.1 dev-a's third persistent session: return code %d, want 3", rc)
	}
	out, err := mosquittoRun(t, p.addr, "mosquitto_sub", "-V", "311", "-c", "-i", "dev-a/4",
		"-u", "dev-a", "-P", "secret-dev-a", "-t", "devices/dev-a/x", "-C", "1", "-W", "5")
	if err == nil || !strings.Contains(strings.ToLower(out), "unavailable") {
		t.Errorf("mosquitto_sub -c over the identity's cap: %v %q, want broker unavailable", err, out)
	}
	if c, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-a/1", "dev-a", 3600)); rc != 0 {
		t.Errorf("dev-a resuming its own session at the cap: CONNACK 0x%02x", rc)
	} else {
		c.Close()
	}
	if _, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-a/5", "dev-a", 0)); rc != 0 {
		t.Errorf("dev-a clean session at the cap: CONNACK 0x%02x", rc)
	}
	if _, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-b/1", "dev-b", 3600)); rc != 0 {
		t.Errorf("dev-b's first persistent session: CONNACK 0x%02x", rc)
	}
	// dev-a/2 comes back with a clean session: its persistent one ends and
	// frees the slot.
	if _, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-a/2", "dev-a", 0)); rc != 0 {
		t.Fatalf("dev-a/2 clean: CONNACK 0x%02x", rc)
	}
	if _, rc := connectAs(t, p.addr, packet.V5, login(packet.V5, "dev-a/3", "dev-a", 3600)); rc != 0 {
		t.Errorf("dev-a/3 once dev-a/2 ended: CONNACK 0x%02x, want 0", rc)
	}
	waitFor(t, waitTimeout, "the refusal logged", func() bool {
		return strings.Contains(p.stderr.String(), "mqtt.max_sessions_per_identity reached")
	})
}
