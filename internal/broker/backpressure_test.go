package broker

import (
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// backpressureBroker has a queue of 32 messages per session, so that holds
// start at 2 queued (holdFrom), and a subscriber "s" with Receive Maximum 1.
func backpressureBroker(t *testing.T) (*testBroker, *client) {
	cfg := testConfig()
	cfg.MaxQueuedMessages = 32
	tb := startBroker(t, Options{AllowAnonymous: true, Config: cfg})
	s := tb.connect("s", packet.V5, func(p *packet.Connect) {
		p.Props.ReceiveMaximum = 1
		p.Props.Set(packet.PropReceiveMaximum)
	})
	s.subscribe(1, "bp", 1)
	return tb, s
}

// TestQoS1BackpressureWindow: publishers whose windows fit in the queue
// lose nothing however slow the subscriber; nothing is dropped.
func TestQoS1BackpressureWindow(t *testing.T) {
	tb, s := backpressureBroker(t)
	p := tb.connect("p", packet.V5)
	const total, window = 200, 8
	done := make(chan struct{})
	go func() { // the subscriber acknowledges slowly
		defer close(done)
		for i := 1; i <= total; i++ {
			pk, err := s.read(waitTime)
			if err != nil {
				t.Errorf("subscriber: message %d: %v", i, err)
				return
			}
			m, ok := pk.(*packet.Publish)
			if !ok || string(m.Payload) != strconv.Itoa(i) {
				t.Errorf("subscriber: message %d: got %+v", i, pk)
				return
			}
			time.Sleep(time.Millisecond)
			s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
		}
	}()
	sent, acked := 0, 0
	for acked < total {
		for sent < total && sent-acked < window {
			sent++
			p.publish("bp", strconv.Itoa(sent), 1, false, uint16(sent))
		}
		p.expect(packet.PUBACK)
		acked++
	}
	<-done
	if d := tb.Stats().Drops["queue_full"]; d != 0 {
		t.Fatalf("%d queue_full drops", d)
	}
}

// TestQoS1BackpressureBounded: a subscriber that stops acknowledging holds
// a publisher for at most holdMax, then the overflow policy applies.
func TestQoS1BackpressureBounded(t *testing.T) {
	tb, _ := backpressureBroker(t)
	p := tb.connect("p", packet.V5)
	for i := uint16(1); i <= 4; i++ {
		p.publish("bp", strconv.Itoa(int(i)), 1, false, i)
	}
	p.expect(packet.PUBACK)
	p.expect(packet.PUBACK)
	start := time.Now()
	p.expect(packet.PUBACK)
	p.expect(packet.PUBACK)
	if d := time.Since(start); d < holdMax/2 {
		t.Fatalf("held PUBACKs came after %v, want about %v", d, holdMax)
	}
	// Stalled: no more holds until the queue drains.
	p.publish("bp", "5", 1, false, 5)
	p.expect(packet.PUBACK)
}
