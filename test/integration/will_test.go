package integration

import (
	"slices"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func willConnect(id string, expiry, delay uint32) *paho.Connect {
	cp := v5Connect(id, true, expiry)
	cp.WillMessage = &paho.WillMessage{Topic: "will/" + id, QoS: 1, Payload: []byte("gone " + id)}
	cp.WillProperties = &paho.WillProperties{
		WillDelayInterval: paho.Uint32(delay),
		ContentType:       "text/plain",
		User:              paho.UserProperties{{Key: "k", Value: "v"}},
	}
	return cp
}

// TestWillOnAbnormalClose proves the will is published when the network
// connection closes without DISCONNECT [MQTT-3.1.2-8], with its will
// properties passed on [MQTT-3.1.3.2] (raw v5 CONNECT: paho.golang drops
// Content Type from will properties), through Paho v5 and v3.1.1 too.
func TestWillOnAbnormalClose(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1))

	raw := dialRaw(t, addr, packet.V5)
	cp := rawConnect("wraw", true)
	cp.WillFlag, cp.WillQoS, cp.WillTopic, cp.WillPayload = true, 1, "will/wraw", []byte("gone wraw")
	wp := &cp.WillProps
	wp.ContentType, wp.ResponseTopic, wp.CorrelationData = "text/plain", "reply/here", []byte{1, 2, 3}
	wp.User = []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}
	wp.PayloadFormat = 1
	wp.Set(packet.PropPayloadFormat)
	raw.mustConnect(cp)
	raw.Close()
	m := recv1(t, watcher.msgs)
	if m.Topic != "will/wraw" || string(m.Payload) != "gone wraw" || m.QoS != 1 {
		t.Errorf("raw v5 will: got %v", m)
	}
	if p := m.Props; p == nil || p.ContentType != "text/plain" || p.ResponseTopic != "reply/here" ||
		string(p.CorrelationData) != "\x01\x02\x03" || p.PayloadFormat == nil || *p.PayloadFormat != 1 ||
		!slices.Equal(p.User, paho.UserProperties{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}) {
		t.Errorf("will properties not carried: %+v", m.Props)
	}

	c5 := connectV5(t, addr, willConnect("w5", 0, 0))
	c5.kill()
	if m := recv1(t, watcher.msgs); m.Topic != "will/w5" || string(m.Payload) != "gone w5" {
		t.Errorf("paho v5 will: got %v", m)
	}

	c3 := connectV3(t, srv.URL("tcp"), "w3", true, func(o *mqtt.ClientOptions) {
		o.SetWill("will/w3", "gone w3", 1, false)
	})
	c3.kill()
	if m := recv1(t, watcher.msgs); m.Topic != "will/w3" || string(m.Payload) != "gone w3" {
		t.Errorf("v3 will: got %v", m)
	}
}

// TestNoWillOnNormalDisconnect proves DISCONNECT 0x00 discards the will
// [MQTT-3.1.2-10], and that v5 DISCONNECT 0x04 publishes it.
func TestNoWillOnNormalDisconnect(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1))

	connectV5(t, addr, willConnect("normal", 0, 0)).disconnect(0x00, nil)
	c3 := connectV3(t, srv.URL("tcp"), "normal3", true, func(o *mqtt.ClientOptions) {
		o.SetWill("will/normal3", "gone", 1, false)
	})
	c3.Disconnect(250)
	connectV5(t, addr, willConnect("withwill", 0, 0)).disconnect(0x04, nil)
	waitClients(t, srv, 1) // each will published or discarded

	connectV5(t, addr, v5Connect("m", true, 0)).publish("will/marker", 1, markerPayload)
	got := recvUntil(t, watcher.msgs, "will/marker")
	if len(got) != 1 || got[0].Topic != "will/withwill" {
		t.Fatalf("got %v, want only will/withwill (DISCONNECT 0x04)", summarize(got))
	}
}

// TestWillDelayCancelledByReconnect proves a v5 will with a delay is not
// published if the client reconnects within the delay [MQTT-3.1.3-9].
func TestWillDelayCancelledByReconnect(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1), sub("marker", 1))

	c := connectV5(t, addr, willConnect("delayed", 60, 1))
	c.kill()
	back := connectV5(t, addr, v5Connect("delayed", false, 60))
	if !back.connack.SessionPresent {
		t.Errorf("reconnect within will delay: session present = false")
	}
	// The same will from a later close fires after the cancelled one
	// would have: it must come first.
	connectV5(t, addr, willConnect("later", 60, 1)).kill()
	if m := recv1(t, watcher.msgs); m.Topic != "will/later" {
		t.Errorf("got %v, want only the will of the client that did not come back", m)
	}
}

// TestWillDelayElapses proves a delayed v5 will is published after its delay
// and not before [MQTT-3.1.3-9], and that session end publishes a will whose
// delay is longer than the session [MQTT-3.1.3-9: whichever is first].
func TestWillDelayElapses(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1))

	c := connectV5(t, addr, willConnect("delayed", 60, 1))
	start := time.Now()
	c.kill()
	m := recv1(t, watcher.msgs)
	if el := time.Since(start); m.Topic != "will/delayed" || el < 900*time.Millisecond {
		t.Errorf("delayed will: got %v after %v, want will/delayed after >= 1s", m, el)
	}

	// Session expiry 0 ends the session at close: the 60 s will goes now.
	c = connectV5(t, addr, willConnect("shortsession", 0, 60))
	start = time.Now()
	c.kill()
	m = recvN(t, watcher.msgs, 1, 3*time.Second)[0]
	if m.Topic != "will/shortsession" {
		t.Errorf("will at session end: got %v", m)
	}
	t.Logf("will at session end after %v", time.Since(start))
}

// TestWillRetained proves a will with RETAIN set becomes the retained
// message of its topic [MQTT-3.1.2-17].
func TestWillRetained(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1))
	cp := willConnect("ret", 0, 0)
	cp.WillMessage.Retain = true
	connectV5(t, addr, cp).kill()
	recv1(t, watcher.msgs)

	late := connectV5(t, addr, v5Connect("late", true, 0))
	late.subscribe(sub("will/ret", 1))
	if m := recv1(t, late.msgs); string(m.Payload) != "gone ret" || !m.Retain {
		t.Errorf("retained will: got %v", m)
	}
}

// TestWillOnKeepAliveTimeoutRaw proves a client that goes silent past 1.5x
// its keep-alive is disconnected and its will published [MQTT-3.1.2-22,
// MQTT-3.1.2-8], over a raw socket.
func TestWillOnKeepAliveTimeoutRaw(t *testing.T) {
	// Not parallel: timing bounds are checked on a quiet machine.
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1))
	raw := dialRaw(t, addr, packet.V311)
	raw.mustConnect(&packet.Connect{ClientID: "silent", CleanStart: true, KeepAlive: 1,
		WillFlag: true, WillQoS: 1, WillTopic: "will/silent", WillPayload: []byte("timeout")})
	raw.mustClose(3 * time.Second)
	if m := recv1(t, watcher.msgs); m.Topic != "will/silent" {
		t.Errorf("got %v", m)
	}
}

// TestWillOnTakeover proves the will of a connection closed by a takeover
// follows the will rules [MQTT-3.1.4-3, 3.1.2.5]: with Will Delay 0 it is
// published; with a delay and a resuming new connection (Clean Start 0) it is
// not; with a delay and a Clean Start 1 takeover the old session ends, so
// it is published at once.
func TestWillOnTakeover(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	watcher := connectV5(t, addr, v5Connect("watcher", true, 0))
	watcher.subscribe(sub("will/#", 1), sub("marker", 0))
	withWill := func(id string, delay uint32) *rawConn {
		raw := dialRaw(t, addr, packet.V5)
		cp := rawConnect(id, true)
		cp.Props = sessionExpiry(60)
		cp.WillFlag, cp.WillQoS, cp.WillTopic, cp.WillPayload = true, 1, "will/"+id, []byte(id)
		cp.WillProps.WillDelay = delay
		cp.WillProps.Set(packet.PropWillDelay)
		raw.mustConnect(cp)
		return raw
	}
	takeover := func(id string, clean bool) {
		raw := dialRaw(t, addr, packet.V5)
		cp := rawConnect(id, clean)
		cp.Props = sessionExpiry(60)
		raw.mustConnect(cp)
	}

	withWill("nodelay", 0)
	takeover("nodelay", false)
	if m := recv1(t, watcher.msgs); m.Topic != "will/nodelay" {
		t.Errorf("takeover of a will with delay 0: got %v, want will/nodelay", m)
	}

	withWill("delayed", 60)
	takeover("delayed", false)
	withWill("cleaned", 60)
	takeover("cleaned", true)
	start := time.Now()
	m := recvN(t, watcher.msgs, 1, 5*time.Second)[0]
	if m.Topic != "will/cleaned" {
		t.Errorf("got %v first, want will/cleaned (Clean Start 1 takeover ends the session); will/delayed must wait", m)
	}
	t.Logf("will/cleaned after %v", time.Since(start))
	watcher.publish("marker", 0, "m")
	if extra := recvUntil(t, watcher.msgs, "marker"); len(extra) > 0 {
		t.Errorf("unexpected wills: %v (will/delayed was resumed within its delay)", summarize(extra))
	}
}
