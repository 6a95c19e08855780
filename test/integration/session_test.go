package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
)

// TestCleanStartAndSessionPresent proves v5 Clean Start and Session Present:
// a new session says false, resuming says true [MQTT-3.2.2-3], Clean Start
// discards the session and its subscriptions [MQTT-3.1.2-4], and the same
// for v3.1.1 Clean Session [MQTT-3.2.2-1, -2].
func TestCleanStartAndSessionPresent(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))

	c := connectV5(t, addr, v5Connect("s5", false, 60))
	if c.connack.SessionPresent {
		t.Errorf("first connect: session present = true")
	}
	c.subscribe(sub("cs/a", 1))
	c.disconnect(0, nil)

	c = connectV5(t, addr, v5Connect("s5", false, 60))
	if !c.connack.SessionPresent {
		t.Errorf("resume: session present = false")
	}
	pub.publish("cs/a", 1, "kept")
	if m := recv1(t, c.msgs); string(m.Payload) != "kept" {
		t.Errorf("resumed subscription delivered %v", m)
	}
	c.disconnect(0, nil)

	c = connectV5(t, addr, v5Connect("s5", true, 60))
	if c.connack.SessionPresent {
		t.Errorf("clean start: session present = true [MQTT-3.2.2-2]")
	}
	c.subscribe(sub("cs/marker", 0))
	pub.publish("cs/a", 1, "dropped")
	pub.publish("cs/marker", 0, "m")
	if got := recvUntil(t, c.msgs, "cs/marker"); len(got) > 0 {
		t.Errorf("clean start kept old subscription: %v", summarize(got))
	}

	url := srv.URL("tcp")
	v3 := connectV3(t, url, "s3", false)
	if v3.sessionPresent {
		t.Errorf("v3 first clean=false connect: session present = true")
	}
	v3.Disconnect(250)
	v3 = connectV3(t, url, "s3", false)
	if !v3.sessionPresent {
		t.Errorf("v3 resume clean=false: session present = false [MQTT-3.2.2-2]")
	}
	v3.Disconnect(250)
	v3 = connectV3(t, url, "s3", true)
	if v3.sessionPresent {
		t.Errorf("v3 clean=true: session present = true [MQTT-3.2.2-1]")
	}
}

// TestSessionExpiry proves a v5 session with a 1 s expiry is gone after it
// expires [MQTT-3.1.2-23], while one with expiry 0 ends at disconnect.
func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)

	c := connectV5(t, addr, v5Connect("zero", false, 0))
	c.subscribe(sub("x", 1))
	c.disconnect(0, nil)
	waitClients(t, srv, 0)
	if c = connectV5(t, addr, v5Connect("zero", false, 0)); c.connack.SessionPresent {
		t.Errorf("expiry 0: session present after reconnect")
	}

	c = connectV5(t, addr, v5Connect("one", false, 1))
	c.subscribe(sub("x", 1))
	c.disconnect(0, nil)
	waitClients(t, srv, 1) // "zero" is still connected
	// The session must survive well inside its interval...
	if c = connectV5(t, addr, v5Connect("one", false, 1)); !c.connack.SessionPresent {
		t.Errorf("expiry 1s: session gone immediately after disconnect")
	}
	c.disconnect(0, nil)
	waitClients(t, srv, 1)
	// ...and be gone once it has passed.
	expired := time.Now().Add(1500 * time.Millisecond)
	waitFor(t, 3*time.Second, "session expiry interval to pass", func() bool { return time.Now().After(expired) })
	if c = connectV5(t, addr, v5Connect("one", false, 1)); c.connack.SessionPresent {
		t.Errorf("expiry 1s: session present 1.5s after disconnect")
	}

	// DISCONNECT may shorten the expiry to 0 [MQTT-3.14.2.2.2].
	c = connectV5(t, addr, v5Connect("shorten", false, 60))
	c.disconnect(0, &paho.DisconnectProperties{SessionExpiryInterval: paho.Uint32(0)})
	waitClients(t, srv, 2) // "zero" and "one"
	if c = connectV5(t, addr, v5Connect("shorten", false, 60)); c.connack.SessionPresent {
		t.Errorf("DISCONNECT with expiry 0: session still present")
	}
}

// TestOfflineQueueing proves a persistent session (v3.1.1 clean=false, v5
// session expiry > 0) queues QoS 1 messages while offline and delivers them,
// in order, on reconnect [MQTT-3.1.2-5 3.1.1 / 4.5.0].
func TestOfflineQueueing(t *testing.T) {
	t.Parallel()
	const n = 50
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	url := srv.URL("tcp")
	pub := connectV5(t, addr, v5Connect("pub", true, 0))

	v3 := connectV3(t, url, "q3", false)
	v3.subscribe("q/3", 1)
	v3.Disconnect(250)
	v5 := connectV5(t, addr, v5Connect("q5", false, 300))
	v5.subscribe(sub("q/5", 1))
	v5.disconnect(0, nil)

	for i := range n {
		pub.publish("q/3", 1, fmt.Sprint(i))
		pub.publish("q/5", 1, fmt.Sprint(i))
	}
	pub.publish("q/3", 0, "qos0-may-drop")

	v3 = connectV3(t, url, "q3", false)
	if !v3.sessionPresent {
		t.Errorf("v3 resume: session present = false")
	}
	got3 := recvN(t, v3.msgs, n, waitTimeout)
	v5 = connectV5(t, addr, v5Connect("q5", false, 300))
	got5 := recvN(t, v5.msgs, n, waitTimeout)
	for i := range n {
		if string(got3[i].Payload) != fmt.Sprint(i) || got3[i].QoS != 1 {
			t.Fatalf("v3 queued message %d: %v", i, got3[i])
		}
		if string(got5[i].Payload) != fmt.Sprint(i) || got5[i].QoS != 1 {
			t.Fatalf("v5 queued message %d: %v", i, got5[i])
		}
	}
}

// TestSessionTakeover proves a second connection with the same client id
// closes the first [MQTT-3.1.4-3]: a v5 client gets DISCONNECT 0x8E, a
// v3.1.1 client is closed, and the session carries over to the new one.
func TestSessionTakeover(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))

	first := connectV5(t, addr, v5Connect("same", false, 60))
	first.subscribe(sub("tk", 1))
	second := connectV5(t, addr, v5Connect("same", false, 60))
	if !second.connack.SessionPresent {
		t.Errorf("takeover: session present = false on the new connection")
	}
	select {
	case d := <-first.disc:
		if d.ReasonCode != 0x8E {
			t.Errorf("taken-over v5 client got DISCONNECT 0x%02x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("taken-over v5 client got no DISCONNECT")
	}
	pub.publish("tk", 1, "to second")
	if m := recv1(t, second.msgs); string(m.Payload) != "to second" {
		t.Errorf("new connection got %v", m)
	}

	url := srv.URL("tcp")
	a := connectV3(t, url, "same3", true)
	connectV3(t, url, "same3", true)
	select {
	case <-a.lost:
	case <-time.After(waitTimeout):
		t.Fatalf("taken-over v3 client not disconnected")
	}
}

// TestInflightRedeliveredOnResume proves an unacknowledged QoS 1 message is
// resent with DUP on session resumption [MQTT-4.4.0-1, MQTT-3.3.1-1].
func TestInflightRedeliveredOnResume(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	raw := dialRaw(t, addr, 5)
	cp := rawConnect("inflight", true)
	cp.Props = sessionExpiry(60)
	raw.mustConnect(cp)
	raw.subscribe(1, subID(0), rawSub("if/x", 1))
	pub.publish("if/x", 1, "unacked")
	first := raw.publishes(1)[0]
	raw.Close()

	raw = dialRaw(t, addr, 5)
	cp = rawConnect("inflight", false)
	cp.Props = sessionExpiry(60)
	if ca := raw.mustConnect(cp); !ca.SessionPresent {
		t.Fatalf("resume: session present = false")
	}
	again := raw.publishes(1)[0]
	if !again.Dup || again.PacketID != first.PacketID || string(again.Payload) != "unacked" {
		t.Errorf("redelivery: dup=%v id=%d payload=%q, want dup=true id=%d payload \"unacked\"",
			again.Dup, again.PacketID, again.Payload, first.PacketID)
	}
}

// TestDisconnectCannotRaiseZeroExpiry proves a DISCONNECT that sets a
// non-zero Session Expiry Interval after CONNECT set zero is a Protocol
// Error [MQTT-3.14.2-2] and leaves no session behind.
func TestDisconnectCannotRaiseZeroExpiry(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("zero", true))
	raw.subscribe(1, subID(0), rawSub("z", 1))
	raw.send(&packet.Disconnect{Props: sessionExpiry(300)})
	raw.mayClose(waitTimeout, 0x82)
	waitClients(t, srv, 0)
	if c := connectV5(t, addr, v5Connect("zero", false, 300)); c.connack.SessionPresent {
		t.Errorf("session kept after DISCONNECT raised its expiry from 0")
	}
}

// TestDisconnectExtendsExpiry proves a DISCONNECT may raise a non-zero
// Session Expiry Interval [MQTT-3.14.2.2.2]: a 1 s session extended to 60 s
// at disconnect is still there after 1.5 s.
func TestDisconnectExtendsExpiry(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	c := connectV5(t, addr, v5Connect("ext", false, 1))
	c.disconnect(0, &paho.DisconnectProperties{SessionExpiryInterval: paho.Uint32(60)})
	gone := time.Now()
	waitFor(t, 5*time.Second, "the original 1 s expiry to pass", func() bool { return time.Since(gone) > 1500*time.Millisecond })
	if c = connectV5(t, addr, v5Connect("ext", false, 60)); !c.connack.SessionPresent {
		t.Errorf("session gone after its expiry was extended to 60 s at DISCONNECT")
	}
}
