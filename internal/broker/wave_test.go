//go:build linux

package broker

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// waveBroker starts a broker whose waves hold connections for hold, and
// n QoS 2 subscribers of topic that have each received one QoS 2 publish
// (so each owes a PUBREC), with the packet id it came with.
func waveBroker(t *testing.T, hold time.Duration, n int, topic string) (*testBroker, []*client, []uint16) {
	t.Helper()
	return waveBrokerSmall(t, hold, n, 0, topic)
}

// waveBrokerSmall is waveBroker where the first small subscribers allow
// packets too small for the publish: their copies are dropped, and they
// get no PUBLISH (their packet id is 0).
func waveBrokerSmall(t *testing.T, hold time.Duration, n, small int, topic string) (*testBroker, []*client, []uint16) {
	t.Helper()
	if !canPeek {
		t.Skip("no parked connections")
	}
	tb := startBroker(t, Options{AllowAnonymous: true})
	tb.mu.Lock()
	tb.readers = readerBounds{all: maxActive, fast: perCore(), stall: stallCheck, hold: hold}
	tb.mu.Unlock()
	tiny := func(p *packet.Connect) {
		p.Props.MaximumPacketSize = 32 // the publish is 64 bytes and more
		p.Props.Set(packet.PropMaximumPacketSize)
	}
	subs := make([]*client, n)
	for i := range subs {
		if i < small {
			subs[i] = tb.connect("wave-"+strconv.Itoa(i), packet.V5, tiny)
		} else {
			subs[i] = tb.connect("wave-"+strconv.Itoa(i), packet.V5)
		}
		subs[i].subscribe(1, topic, 2)
	}
	pub := tb.connect("pub", packet.V311)
	payload := strings.Repeat("x", 64)
	pub.publish(topic, payload, 2, false, 1)
	pub.expect(packet.PUBREC)
	pids := make([]uint16, n)
	for i, s := range subs[small:] {
		pids[small+i] = s.expectPublish(topic, payload).PacketID
	}
	return tb, subs, pids
}

// waveReleases returns how many waves were released on their quorum and
// at their deadline.
func waveReleases(tb *testBroker) (quorums, dues uint64) {
	tb.mu.Lock()
	p := tb.poller
	tb.mu.Unlock()
	return p.quorums.Load(), p.dues.Load()
}

func (c *client) pubrec(pid uint16) { c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: pid}) }

func (c *client) expectPubrel(pid uint16) {
	c.t.Helper()
	if got := c.expect(packet.PUBREL).(*packet.Ack).PacketID; got != pid {
		c.t.Fatalf("PUBREL for %d, want %d", got, pid)
	}
}

// TestWaveQuorum: the answers to a large fan-out are read together once
// nine in ten have come, and later ones at once.
func TestWaveQuorum(t *testing.T) {
	const n = 80
	quorum := n - n/10
	tb, subs, pids := waveBroker(t, time.Minute, n, "wave/q")
	for i := range quorum - 1 {
		subs[i].pubrec(pids[i])
	}
	subs[0].expectNone() // held: one answer short of the quorum
	subs[quorum-1].pubrec(pids[quorum-1])
	for i := range quorum {
		subs[i].expectPubrel(pids[i])
	}
	if q, d := waveReleases(tb); q != 1 || d != 0 {
		t.Fatalf("waves released on quorum %d, at deadline %d; want 1 and 0", q, d)
	}
	for i := quorum; i < n; i++ { // the wave is over: not held
		subs[i].pubrec(pids[i])
		subs[i].expectPubrel(pids[i])
	}
}

// TestWaveDeadline: when more than one in ten never answer, the others
// are read at the deadline.
func TestWaveDeadline(t *testing.T) {
	const n, silent = 80, 20
	tb, subs, pids := waveBroker(t, 20*time.Millisecond, n, "wave/d")
	for i := silent; i < n; i++ {
		subs[i].pubrec(pids[i])
	}
	for i := silent; i < n; i++ {
		subs[i].expectPubrel(pids[i])
	}
	if q, d := waveReleases(tb); q != 0 || d != 1 {
		t.Fatalf("waves released on quorum %d, at deadline %d; want 0 and 1", q, d)
	}
	for i := range silent {
		subs[i].pubrec(pids[i])
		subs[i].expectPubrel(pids[i])
	}
}

// TestNoWaveForSmallFanout: below waveMin recipients every answer is read
// at once, even with a hold that would outlast the test.
func TestNoWaveForSmallFanout(t *testing.T) {
	_, subs, pids := waveBroker(t, time.Hour, waveMin-1, "wave/s")
	subs[0].pubrec(pids[0])
	subs[0].expectPubrel(pids[0])
}

// TestWaveWithoutDroppedCopies: copies dropped for a client's Maximum
// Packet Size owe the wave no answer, so the quorum counts without them.
func TestWaveWithoutDroppedCopies(t *testing.T) {
	const n, small = 80, 10
	sent := n - small
	quorum := sent - sent/10
	tb, subs, pids := waveBrokerSmall(t, time.Minute, n, small, "wave/m")
	for i := small; i < small+quorum; i++ {
		subs[i].pubrec(pids[i])
	}
	for i := small; i < small+quorum; i++ {
		subs[i].expectPubrel(pids[i])
	}
	if q, _ := waveReleases(tb); q != 1 {
		t.Fatalf("waves released on quorum %d, want 1", q)
	}
}
