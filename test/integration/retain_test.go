package integration

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// TestRetainedSetAndClear proves a retained message reaches later
// subscribers with RETAIN set [MQTT-3.3.1-9], the newest replaces the older
// [MQTT-3.3.1-5], and an empty retained payload clears it [MQTT-3.3.1-10]
// (the empty message itself is not stored [MQTT-3.3.1-11]).
func TestRetainedSetAndClear(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	pub.publish("r/a", 1, "old", retained)
	pub.publish("r/a", 1, "new", retained)
	pub.publish("r/b", 1, "b", retained)

	s1 := connectV5(t, addr, v5Connect("s1", true, 0))
	s1.subscribe(sub("r/#", 1), sub("live", 0))
	pub.publish("live", 0, "m")
	got := recvUntil(t, s1.msgs, "live")
	want := map[string]string{"r/a": "new", "r/b": "b"}
	if len(got) != len(want) {
		t.Fatalf("retained on subscribe: %v, want %v", summarize(got), want)
	}
	for _, m := range got {
		if want[m.Topic] != string(m.Payload) || !m.Retain {
			t.Errorf("retained on subscribe: %v, want payload %q with RETAIN", m, want[m.Topic])
		}
	}

	pub.publish("r/a", 1, "", retained)
	// The clearing message still goes to current subscribers.
	if m := recv1(t, s1.msgs); m.Topic != "r/a" || len(m.Payload) != 0 {
		t.Errorf("live clearing message: got %v", m)
	}

	s2 := connectV3(t, srv.URL("tcp"), "s2", true)
	s2.subscribe("r/#", 1)
	s2.subscribe("live", 0)
	pub.publish("live", 0, "m")
	got = recvUntil(t, s2.msgs, "live")
	if len(got) != 1 || got[0].Topic != "r/b" || !got[0].Retain {
		t.Errorf("after clearing r/a, v3 subscriber got %v, want only retained r/b", summarize(got))
	}
}

// TestRetainHandling proves the v5 Retain Handling option: 0 sends retained
// messages on every subscribe, 1 only when the subscription is new, 2 never
// [MQTT-3.3.1-9, -10, -11 in 3.3.1.3 / 3.8.3.1].
func TestRetainHandling(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	pub.publish("rh/x", 1, "kept", retained)

	c := connectV5(t, addr, v5Connect("c", true, 0))
	c.subscribe(sub("live", 0))
	count := func(rh byte, filter string) int {
		t.Helper()
		c.subscribe(paho.SubscribeOptions{Topic: filter, QoS: 1, RetainHandling: rh})
		pub.publish("live", 0, "m")
		return len(recvUntil(t, c.msgs, "live"))
	}
	if n := count(0, "rh/x"); n != 1 {
		t.Errorf("retain handling 0, new subscription: %d retained messages, want 1", n)
	}
	if n := count(0, "rh/x"); n != 1 {
		t.Errorf("retain handling 0, existing subscription: %d retained messages, want 1", n)
	}
	if n := count(1, "rh/+"); n != 1 {
		t.Errorf("retain handling 1, new subscription: %d retained messages, want 1", n)
	}
	if n := count(1, "rh/+"); n != 0 {
		t.Errorf("retain handling 1, existing subscription: %d retained messages, want 0", n)
	}
	if n := count(2, "rh/#"); n != 0 {
		t.Errorf("retain handling 2: %d retained messages, want 0", n)
	}
}

// TestRetainAsPublished proves forwarded live messages keep RETAIN only for
// subscriptions with Retain As Published [MQTT-3.3.1-12, -13], and that a
// v3.1.1 subscriber sees RETAIN cleared on live messages [MQTT-3.3.1-9 3.1.1].
func TestRetainAsPublished(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	rap := connectV5(t, addr, v5Connect("rap", true, 0))
	rap.subscribe(paho.SubscribeOptions{Topic: "rap/x", QoS: 1, RetainAsPublished: true})
	plain := connectV5(t, addr, v5Connect("plain", true, 0))
	plain.subscribe(sub("rap/x", 1))
	v3 := connectV3(t, srv.URL("tcp"), "v3", true)
	v3.subscribe("rap/x", 1)

	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	pub.publish("rap/x", 1, "r", retained)
	if m := recv1(t, rap.msgs); !m.Retain {
		t.Errorf("retain-as-published subscriber: RETAIN cleared on %v", m)
	}
	if m := recv1(t, plain.msgs); m.Retain {
		t.Errorf("plain v5 subscriber: RETAIN set on live %v", m)
	}
	if m := recv1(t, v3.msgs); m.Retain {
		t.Errorf("v3 subscriber: RETAIN set on live %v", m)
	}
}

// TestRetainedQoSDowngraded proves a retained message is delivered at
// min(its QoS, the subscription's QoS).
func TestRetainedQoSDowngraded(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	pub.publish("rq/2", 2, "two", retained)
	pub.publish("rq/0", 0, "zero", retained)
	c := connectV5(t, addr, v5Connect("c", true, 0))
	c.subscribe(sub("rq/2", 1))
	if m := recv1(t, c.msgs); m.QoS != 1 || string(m.Payload) != "two" {
		t.Errorf("retained qos 2 to qos 1 subscription: %v", m)
	}
	c.subscribe(sub("rq/0", 2))
	if m := recv1(t, c.msgs); m.QoS != 0 || string(m.Payload) != "zero" {
		t.Errorf("retained qos 0 to qos 2 subscription: %v", m)
	}
}
