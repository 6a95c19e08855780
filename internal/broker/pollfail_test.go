package broker

import (
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/netpoll"
	"github.com/culexmq/culex/internal/testlog"
)

// TestPollerRecoversFromWaitErrors: waits of the poller that fail (here
// EBADF, three in a row) are logged and counted, and the node goes on:
// a connection parked before the failures and one parked during them are
// both served afterwards.
func TestPollerRecoversFromWaitErrors(t *testing.T) {
	if !netpoll.CanPeek {
		t.Skip("no parked connections")
	}
	const failures = 3
	var left atomic.Int32
	logs := new(testlog.Buffer)
	tb := startBroker(t, Options{AllowAnonymous: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	tb.mu.Lock()
	tb.pollFault = func() error {
		for {
			n := left.Load()
			if n <= 0 {
				return nil
			}
			if left.CompareAndSwap(n, n-1) {
				return syscall.EBADF
			}
		}
	}
	tb.mu.Unlock()
	sub := tb.connect("sub", packet.V311)
	sub.subscribe(1, "poll/#", 1)
	left.Store(failures)
	pub := tb.connect("pub", packet.V311)
	pub.publish("poll/a", "after failures", 1, false, 1)
	pub.expect(packet.PUBACK)
	p := sub.expectPublish("poll/a", "after failures")
	sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	sub.publish("poll/b", "from the old registration", 1, false, 2)
	// Its PUBACK and its own copy come in either order.
	var types []packet.Type
	for range 2 {
		p, err := sub.read(waitTime)
		if err != nil {
			t.Fatalf("after %v: %v", types, err)
		}
		types = append(types, p.Type())
	}
	if !slices.Contains(types, packet.PUBACK) || !slices.Contains(types, packet.PUBLISH) {
		t.Fatalf("got %v, want PUBACK and PUBLISH", types)
	}
	if n := tb.Stats().PollErrors; n != failures {
		t.Fatalf("PollErrors %d, want %d", n, failures)
	}
	if !strings.Contains(logs.String(), "poller: wait failed") || !strings.Contains(logs.String(), syscall.EBADF.Error()) {
		t.Fatalf("failed waits not logged:\n%s", logs)
	}
}
