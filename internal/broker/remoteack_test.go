package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// heldRemote is an AckRemoteRoute that keeps the acks it is given.
type heldRemote struct {
	mu     sync.Mutex
	acks   []Acker
	topics map[Acker]string
	qos0   int
}

func (h *heldRemote) Deliver(m *Message, qos byte) {
	h.mu.Lock()
	h.qos0++
	h.mu.Unlock()
}

func (h *heldRemote) DeliverAck(m *Message, qos byte, ack Acker) {
	h.mu.Lock()
	h.acks = append(h.acks, ack)
	if h.topics == nil {
		h.topics = make(map[Acker]string)
	}
	h.topics[ack] = m.Topic
	h.mu.Unlock()
}

// startHeld starts a broker with a heldRemote on a/#.
func startHeld(t *testing.T) (*testBroker, *heldRemote) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	h := &heldRemote{}
	if err := tb.SubscribeRemote("a/#", 2, h); err != nil {
		t.Fatal(err)
	}
	return tb, h
}

func (h *heldRemote) take() []Acker {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.acks
	h.acks = nil
	return a
}

// TestAckRemoteRouteHoldsPuback: a QoS 1 PUBACK waits for the remote
// route's ack; a failed ack fails the PUBACK (v5: 0x80); QoS 0 and
// forwarded messages are not offered to remote routes for acks, and a
// forwarded retained message is not stored.
func TestAckRemoteRouteHoldsPuback(t *testing.T) {
	tb, h := startHeld(t)
	p := tb.connect("p", packet.V5)
	p.publish("a/b", "x", 1, false, 1)
	var acks []Acker
	eventually(t, "DeliverAck", func() bool { acks = append(acks, h.take()...); return len(acks) == 1 })
	// A marker: a QoS 0 publish goes through Deliver; its PINGRESP-like
	// positive event is the Deliver count, and still no PUBACK is read.
	p.publish("a/c", "y", 0, false, 0)
	eventually(t, "QoS 0 Deliver", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.qos0 == 1 })
	p.send(&packet.Pingreq{})
	p.expect(packet.PINGRESP) // nothing came before it: the PUBACK is held
	acks[0].Done(nil)
	if ack := p.expect(packet.PUBACK).(*packet.Ack); ack.PacketID != 1 || ack.ReasonCode != 0 {
		t.Fatalf("PUBACK %+v", ack)
	}
	p.publish("a/b", "x", 1, false, 2)
	eventually(t, "DeliverAck", func() bool { acks = h.take(); return len(acks) == 1 })
	acks[0].Done(errTestRemote)
	if ack := p.expect(packet.PUBACK).(*packet.Ack); ack.PacketID != 2 || ack.ReasonCode != packet.ErrUnspecified.Value {
		t.Fatalf("PUBACK %+v, want reason 0x80", ack)
	}
	// Forwarded messages (Local) are not offered back; Retain is not stored.
	done := make(chan error, 1)
	tb.Publish(context.Background(), &Message{Topic: "a/r", QoS: 1, Retain: true, Local: true, Forwarded: true, Payload: []byte("r")},
		func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if acks := h.take(); len(acks) != 0 {
		t.Fatalf("forwarded message offered to a remote route")
	}
	if _, ok := tb.retained.Get("a/r"); ok {
		t.Fatal("forwarded retained message stored")
	}
}

var errTestRemote = packet.ErrUnspecified

// TestAckBatch: the acknowledgements an AckBatch completes are queued for
// End, one write per publisher, and carry each Acker's outcome: PUBACK
// (v5 0x80 on failure), and PUBREC for QoS 2.
func TestAckBatch(t *testing.T) {
	tb, h := startHeld(t)
	p5 := tb.connect("p5", packet.V5)
	p3 := tb.connect("p3", packet.V311)
	p5.publish("a/1", "x", 1, false, 1)
	p5.publish("a/2", "x", 1, false, 2)
	p3.publish("a/3", "x", 2, false, 3)
	var acks []Acker
	eventually(t, "DeliverAck", func() bool { acks = append(acks, h.take()...); return len(acks) == 3 })
	var ab AckBatch
	for _, a := range acks {
		var err error
		h.mu.Lock()
		if h.topics[a] == "a/2" {
			err = errTestRemote
		}
		h.mu.Unlock()
		ab.Done(a, err)
	}
	if n := ab.flush.Len(); n != 2 {
		t.Fatalf("%d connections wait in the batch before End, want 2", n)
	}
	ab.End()
	if n := ab.flush.Len(); n != 0 {
		t.Fatalf("%d connections left in the batch after End", n)
	}
	if ack := p5.expect(packet.PUBACK).(*packet.Ack); ack.PacketID != 1 || ack.ReasonCode != 0 {
		t.Fatalf("PUBACK %+v", ack)
	}
	if ack := p5.expect(packet.PUBACK).(*packet.Ack); ack.PacketID != 2 || ack.ReasonCode != packet.ErrUnspecified.Value {
		t.Fatalf("PUBACK %+v, want reason 0x80", ack)
	}
	if ack := p3.expect(packet.PUBREC).(*packet.Ack); ack.PacketID != 3 {
		t.Fatalf("PUBREC %+v", ack)
	}
}

// congestedRemote is a CongestedRoute: congested (room open) until the
// test closes room; it notes when each message came.
type congestedRemote struct {
	room chan struct{}
	got  chan time.Time
}

func (r *congestedRemote) Deliver(m *Message, qos byte) { r.got <- time.Now() }
func (r *congestedRemote) Congested() <-chan struct{}   { return r.room }

// TestCongestedRouteHoldsQoS0Publisher: after a QoS 0 message went to a
// congested route, its publisher's next packet is read once the route has
// room again, or after roomWaitMax; inline and through the pipeline (an
// interceptor).
func TestCongestedRouteHoldsQoS0Publisher(t *testing.T) {
	for _, intercept := range []bool{false, true} {
		t.Run(fmt.Sprintf("intercept=%v", intercept), func(t *testing.T) {
			opts := Options{AllowAnonymous: true}
			if intercept {
				opts.Interceptors = []Interceptor{passInterceptor{}}
			}
			tb := startBroker(t, opts)
			r := &congestedRemote{room: make(chan struct{}), got: make(chan time.Time, 10)}
			if err := tb.SubscribeRemote("c/#", 0, r); err != nil {
				t.Fatal(err)
			}
			p := tb.connect("p", packet.V5)
			p.publish("c/1", "x", 0, false, 0)
			p.publish("c/2", "x", 0, false, 0)
			first := <-r.got
			second := <-r.got
			if d := second.Sub(first); d < roomWaitMax*9/10 {
				t.Errorf("second message routed %v after the first; the reader should have waited about %v", d, roomWaitMax)
			}
			// Room again: the waits end when the route says so, well
			// before roomWaitMax each.
			p.publish("c/3", "x", 0, false, 0)
			<-r.got
			close(r.room)
			start := time.Now()
			const n = 10
			for i := range n {
				p.publish(fmt.Sprintf("c/4/%d", i), "x", 0, false, 0)
			}
			for range n {
				<-r.got
			}
			if d := time.Since(start); d >= n*roomWaitMax {
				t.Errorf("%d messages took %v once the route had room", n, d)
			}
		})
	}
}

type passInterceptor struct{}

func (passInterceptor) Intercept(_ context.Context, _ *ClientInfo, _ *Message, done func(error)) {
	done(nil)
}
