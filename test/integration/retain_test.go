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
	want := map[string]string{"r/a": "new", "r/b": "b"}
	got := recvN(t, s1.msgs, len(want), waitTimeout)
	pub.publish("live", 0, "m")
	if extra := recvUntil(t, s1.msgs, "live"); len(extra) > 0 {
		t.Errorf("more retained messages than topics: %v", summarize(extra))
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
	if m := recv1(t, s2.msgs); m.Topic != "r/b" || !m.Retain {
		t.Errorf("after clearing r/a, v3 subscriber got %v, want retained r/b", m)
	}
	s2.publish("r/marker", 1, false, markerPayload) // read after its SUBSCRIBE, whose retained messages come first
	expectMarker(t, s2.msgs, "r/marker")            // r/a stays cleared
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
	c.subscribe(sub("live", 1))
	// The broker queues a SUBSCRIBE's retained messages before it reads the
	// client's next packet, so c's own marker on "live" comes after them.
	step := func(rh byte, filter string, want int, what string) {
		t.Helper()
		c.subscribe(paho.SubscribeOptions{Topic: filter, QoS: 1, RetainHandling: rh})
		c.publish("live", 1, markerPayload)
		got := recvUntil(t, c.msgs, "live")
		for _, m := range got {
			if m.Topic != "rh/x" || !m.Retain {
				t.Errorf("%s: got %v, want the retained rh/x", what, m)
			}
		}
		if len(got) != want {
			t.Errorf("%s: %d retained messages, want %d", what, len(got), want)
		}
	}
	step(0, "rh/x", 1, "retain handling 0, new subscription")
	step(0, "rh/x", 1, "retain handling 0, existing subscription")
	step(1, "rh/+", 1, "retain handling 1, new subscription")
	step(1, "rh/+", 0, "retain handling 1, existing subscription")
	step(2, "rh/#", 0, "retain handling 2")
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
