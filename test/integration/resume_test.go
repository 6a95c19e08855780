package integration

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
)

// TestQueuedBeforeLiveOnResume proves messages queued for an offline
// session are delivered before, and in order with, messages published after
// it reconnects [MQTT-4.6.0-5]: one publisher's stream stays in order across
// the offline/online boundary, also when the backlog exceeds the in-flight
// window.
func TestQueuedBeforeLiveOnResume(t *testing.T) {
	t.Parallel()
	const offline, online = 300, 300
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxInflight = 16 })
	addr := tcpAddr(t, srv)
	c := connectV5(t, addr, v5Connect("resumer", false, 300))
	c.subscribe(sub("stream", 1))
	c.disconnect(0, nil)
	waitClients(t, srv, 0)

	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	for i := range offline {
		pub.publish("stream", 1, strconv.Itoa(i))
	}
	errc := make(chan error, 1)
	c = connectV5(t, addr, v5Connect("resumer", false, 300))
	go func() {
		for i := offline; i < offline+online; i++ {
			if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "stream", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	checkOrder(t, "offline then live", recvN(t, c.msgs, offline+online, 30*time.Second))
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestTakeoverMovesInflight proves that when a connection is taken over
// (same client id, Clean Start 0) its unacknowledged QoS 1 messages are
// resent on the new connection with DUP [MQTT-4.4.0-1], and that a takeover
// with Clean Start 1 discards them.
func TestTakeoverMovesInflight(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))

	old, _ := persistentRaw(t, addr, "mover", true)
	old.subscribe(1, subID(0), rawSub("mv", 1))
	for i := range 3 {
		pub.publish("mv", 1, fmt.Sprint(i))
	}
	first := old.publishes(3)

	nw, ca := persistentRaw(t, addr, "mover", false)
	if !ca.SessionPresent {
		t.Fatalf("takeover: session present = false")
	}
	if res := old.awaitClose(waitTimeout); !res.closed || res.disconnect == nil || res.disconnect.ReasonCode != 0x8E {
		t.Errorf("old connection: closed=%v DISCONNECT %+v, want 0x8E", res.closed, res.disconnect)
	}
	again := nw.publishes(3)
	for i := range 3 {
		if !again[i].Dup || again[i].PacketID != first[i].PacketID || string(again[i].Payload) != fmt.Sprint(i) {
			t.Errorf("resent %d: dup=%v id=%d payload=%q, want dup id=%d %q", i, again[i].Dup, again[i].PacketID, again[i].Payload, first[i].PacketID, fmt.Sprint(i))
		}
		nw.send(&packet.Ack{Kind: packet.PUBACK, PacketID: again[i].PacketID})
	}

	pub.publish("mv", 1, "unacked")
	expect[*packet.Publish](nw)
	fresh, ca := persistentRaw(t, addr, "mover", true)
	if ca.SessionPresent {
		t.Errorf("takeover with Clean Start 1: session present = true")
	}
	fresh.subscribe(1, subID(0), rawSub("mv/end", 0))
	pub.publish("mv/end", 0, "end")
	if p := expect[*packet.Publish](fresh); p.Topic != "mv/end" {
		t.Errorf("clean takeover got %s %q, want only mv/end", p.Topic, p.Payload)
	}
}

// TestExpiredSessionsAreReaped proves a disconnected session is removed
// when its expiry passes, without waiting for the client to come back
// (Stats().Sessions falls), and its will is sent at that moment when the
// will delay is longer than the session [MQTT-3.1.3-9].
func TestExpiredSessionsAreReaped(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1))
	base := srv.Broker().Stats().Sessions

	c := connectV5(t, addr, willConnect("reaped", 1, 60))
	c.subscribe(sub("r/x", 1))
	start := time.Now()
	c.kill()
	m := recvN(t, watcher.msgs, 1, 5*time.Second)[0]
	el := time.Since(start)
	if m.Topic != "will/reaped" || el < 900*time.Millisecond {
		t.Errorf("will %v after %v, want will/reaped at session expiry (~1 s)", m, el)
	}
	waitFor(t, 5*time.Second, "the expired session to be removed", func() bool {
		return srv.Broker().Stats().Sessions == base
	})
}

// TestSysClientsConnectedIsAccurate proves $SYS/broker/clients/connected
// reports the number of connected clients.
func TestSysClientsConnectedIsAccurate(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, openSys)
	addr := tcpAddr(t, srv)
	for i := range 4 {
		connectV5(t, addr, v5Connect(fmt.Sprint("c", i), true, 0))
	}
	sys := connectV5(t, addr, v5Connect("sys", true, 0))
	sys.subscribe(sub("$SYS/broker/clients/connected", 0))
	deadline := time.After(waitTimeout)
	var last string
	for last != "5" {
		select {
		case m := <-sys.msgs:
			last = string(m.Payload)
		case <-deadline:
			t.Fatalf("$SYS/broker/clients/connected = %q, want 5", last)
		}
	}
}
