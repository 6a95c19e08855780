package broker

import (
	"context"
	"errors"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestPublishAllOrNothing: an AllOrNothing message that an offline
// session's full queue cannot take is routed to nobody (the online
// subscriber does not get it either) and done gets a QueueFullError naming
// that session before Publish returns; once the session drained, the same
// message goes to both, once each.
func TestPublishAllOrNothing(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedMessages = 2
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	on := tb.connect("on", packet.V5)
	on.subscribe(1, "q", 1)
	offlineSubscriber(t, tb, "off", "q")
	publish := func(payload string) (err error, sync bool) {
		t.Helper()
		called := make(chan error, 1)
		tb.Publish(context.Background(), &Message{Topic: "q", Payload: []byte(payload), QoS: 1, AllOrNothing: true},
			func(err error) { called <- err })
		select {
		case err := <-called:
			return err, true
		default:
		}
		return <-called, false
	}
	ack := func(c *client, payload string) {
		t.Helper()
		p := c.expectPublish("q", payload)
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	for _, p := range []string{"1", "2"} {
		if err, _ := publish(p); err != nil {
			t.Fatalf("publish %s: %v", p, err)
		}
		ack(on, p)
	}
	err, sync := publish("3")
	var qf *QueueFullError
	if !errors.As(err, &qf) || qf.ClientID != "off" || !errors.Is(err, ErrQueueFull) || !sync {
		t.Fatalf("publish 3: %v (before Publish returned: %v), want a QueueFullError for off, at once", err, sync)
	}
	// A marker (no AllOrNothing; off drops it) reaches on next: 3 did not.
	tb.Publish(context.Background(), &Message{Topic: "q", Payload: []byte("m"), QoS: 1}, nil)
	ack(on, "m")

	off := tb.dial(packet.V5)
	off.connect("off", persistent(3600))
	ack(off, "1")
	ack(off, "2")
	if err, _ := publish("3"); err != nil {
		t.Fatalf("publish 3 again: %v", err)
	}
	ack(on, "3")
	ack(off, "3")
	if !tb.HasSession("off") || tb.HasSession("nobody") {
		t.Fatal("HasSession")
	}
}

// TestDropOldestKeepsCommands: with queue_overflow drop_oldest an
// ordinary message evicts the oldest ordinary copy of a full offline
// queue, never an AllOrNothing or Keep one (a command already committed
// in Kafka); with only those queued, the new ordinary message is dropped.
func TestDropOldestKeepsCommands(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedMessages = 3
	cfg.QueueOverflow = "drop_oldest"
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	offlineSubscriber(t, tb, "off", "q")
	publish := func(payload string, all, keep bool) { t.Helper(); publishWait(t, tb, payload, all, keep) }
	publish("c1", true, false)
	publish("o1", false, false)
	publish("c2", true, false)
	publish("o2", false, false) // evicts o1
	publish("o3", false, false) // evicts o2
	publish("k1", false, true)  // evicts o3
	publish("o4", false, false) // nothing may go: dropped
	if d := tb.Stats().Drops["queue_full"]; d != 4 {
		t.Errorf("queue_full drops %d, want 4", d)
	}
	off := tb.dial(packet.V5)
	off.connect("off", persistent(3600))
	for _, p := range []string{"c1", "c2", "k1"} {
		m := off.expectPublish("q", p)
		off.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
	publish("m", false, false) // a marker: nothing else was queued
	m := off.expectPublish("q", "m")
	off.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
}

// offlineSubscriber leaves id a persistent session subscribed to filter at
// QoS 1, offline.
func offlineSubscriber(t *testing.T, tb *testBroker, id, filter string) {
	t.Helper()
	c := tb.connect(id, packet.V5, persistent(3600))
	c.subscribe(1, filter, 1)
	c.close()
	eventually(t, id+" is offline", func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return !tb.sessions[id].online.Load()
	})
}

// publishWait publishes payload on q at QoS 1 and waits for done.
func publishWait(t *testing.T, tb *testBroker, payload string, all, keep bool) {
	t.Helper()
	called := make(chan error, 1)
	tb.Publish(context.Background(), &Message{Topic: "q", Payload: []byte(payload), QoS: 1, AllOrNothing: all, Keep: keep},
		func(err error) { called <- err })
	if err := <-called; err != nil {
		t.Fatalf("publish %s: %v", payload, err)
	}
}

// TestDropOldestKeepsCommandsAcrossRestart: the mark that protects a
// queued command from drop_oldest is stored with it.
func TestDropOldestKeepsCommandsAcrossRestart(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedMessages = 3
	cfg.QueueOverflow = "drop_oldest"
	st := memStore(t)
	tb := startBroker(t, Options{Config: cfg, Store: st, AllowAnonymous: true})
	offlineSubscriber(t, tb, "off", "q")
	publishWait(t, tb, "c1", true, false)
	publishWait(t, tb, "o1", false, false)
	publishWait(t, tb, "c2", true, false)
	tb.stop()
	tb2 := startBroker(t, Options{Config: cfg, Store: st, AllowAnonymous: true})
	publishWait(t, tb2, "o2", false, false) // evicts o1, not c1
	publishWait(t, tb2, "o3", false, false) // evicts o2
	off := tb2.dial(packet.V5)
	off.connect("off", persistent(3600))
	for _, p := range []string{"c1", "c2", "o3"} {
		m := off.expectPublish("q", p)
		off.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
}
