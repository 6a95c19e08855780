package broker

import (
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestOwnPublishNotHeldByFanout: a device that receives one copy of a large
// QoS 1 fan-out, acknowledges it and then publishes itself is read at once,
// while the other recipients have not acknowledged theirs. Nothing makes a
// device's own traffic wait on other devices' acknowledgements (the removed
// "waves" held such a reader for up to 50 ms). The best of three rounds
// must be far below that, which scheduling noise cannot make fail.
func TestOwnPublishNotHeldByFanout(t *testing.T) {
	const silent, rounds = 80, 3
	tb := startBroker(t, Options{AllowAnonymous: true})
	for i := range silent { // receive, never acknowledge
		tb.connect("silent-"+strconv.Itoa(i), packet.V311).subscribe(1, "fan/out", 1)
	}
	dev := tb.connect("device", packet.V311)
	dev.subscribe(1, "fan/out", 1)
	pub := tb.connect("pub", packet.V311)
	best := time.Hour
	for r := range rounds {
		pub.publish("fan/out", "command", 1, false, uint16(r+1))
		pub.expect(packet.PUBACK)
		p := dev.expectPublish("fan/out", "command")
		start := time.Now()
		dev.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		dev.publish("device/state", "done", 1, false, uint16(100+r))
		if got := dev.expect(packet.PUBACK).(*packet.Ack).PacketID; got != uint16(100+r) {
			t.Fatalf("PUBACK for %d, want %d", got, 100+r)
		}
		best = min(best, time.Since(start))
	}
	if best >= 20*time.Millisecond {
		t.Fatalf("the device's own publish was answered after %v at best: its reader was held", best)
	}
}
