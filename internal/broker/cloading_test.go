package broker

import (
	"fmt"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestClusterResumesBounded: the clients of a node that died all come
// back on another node at once. At most maxLoading of their CONNECTs read
// their sessions from the store at a time; the others wait for a slot
// (they used to read all at once, each slower than its CONNECT's deadline
// under a storm), and every client gets its session once the reads
// finish.
func TestClusterResumesBounded(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := clusterNode(t, fc)
	const n = maxLoading + 16
	for i := range n {
		leaveOffline(t, fc, a, fmt.Sprint("s", i), "t", 1)
	}
	pubAck(t, connectTo(t, a, "p", false), "t", "queued", 1, 1) // a backlog for each
	na.kill()
	b, _ := clusterNode(t, fc)
	gate := make(chan struct{})
	fc.mu.Lock()
	fc.gate = gate
	fc.mu.Unlock()
	cs := make([]*client, n)
	for i := range cs {
		cs[i] = b.dial(packet.V5)
		cp := &packet.Connect{Version: packet.V5, KeepAlive: 60, ClientID: fmt.Sprint("s", i)}
		keepSession(0)(cp)
		cs[i].send(cp)
	}
	eventually(t, "every CONNECT reading its backlog or waiting for a slot", func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.backlogs+int(b.loading.waiting.Load()) == n
	})
	fc.mu.Lock()
	reading := fc.backlogs
	fc.mu.Unlock()
	if reading != maxLoading {
		t.Errorf("%d CONNECTs read their backlogs at once, want %d", reading, maxLoading)
	}
	close(gate)
	for i, c := range cs {
		if ack := c.expect(packet.CONNACK).(*packet.Connack); ack.ReasonCode != 0 || !ack.SessionPresent {
			t.Fatalf("s%d: CONNACK 0x%02x, session present %v", i, ack.ReasonCode, ack.SessionPresent)
		}
		if m := c.expect(packet.PUBLISH).(*packet.Publish); string(m.Payload) != "queued" {
			t.Fatalf("s%d: got %q", i, m.Payload)
		}
	}
}
