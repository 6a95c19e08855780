package broker

import (
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// offlineElsewhere makes "s" a persistent session subscribed to t at QoS
// 1 on a new node a of fc, disconnected, and returns a and a's store node.
func offlineElsewhere(t *testing.T, fc *fakeCluster) (*testBroker, *fakeNode) {
	a, na := clusterNode(t, fc)
	leaveOffline(t, fc, a, "s", "t", 1)
	return a, na
}

// leaveOffline makes id a persistent session on tb subscribed to filter,
// disconnected, its record saved offline.
func leaveOffline(t *testing.T, fc *fakeCluster, tb *testBroker, id, filter string, qos byte) {
	t.Helper()
	s := connectTo(t, tb, id, false, keepSession(0))
	s.subscribe(1, filter, qos)
	s.send(&packet.Disconnect{})
	s.expectClosed()
	eventually(t, "the record saved offline", func() bool { r := fc.record(id); return r != nil && r.DiscAt != 0 })
}

// TestClusterResumeLiveBounded: while a resuming session reads its
// backlog, what the node's reader of the log gives it waits within the
// session's queue limits, with its overflow policy, the overflow counted
// queue_full at once (it grew without bound, dropped only once the
// backlog was read).
func TestClusterResumeLiveBounded(t *testing.T) {
	for _, policy := range []string{"drop_new", "drop_oldest"} {
		t.Run(policy, func(t *testing.T) {
			fc := newFakeCluster(t)
			a, na := offlineElsewhere(t, fc)
			pubAck(t, connectTo(t, a, "p", false), "t", "0", 1, 1) // the backlog
			na.kill()
			cfg := testConfig()
			cfg.MaxQueuedMessages, cfg.QueueOverflow = 2, policy
			b := startBroker(t, Options{AllowAnonymous: true, SessionStore: fc.node(t), Config: cfg})
			gate := make(chan struct{})
			fc.mu.Lock()
			fc.gate = gate
			fc.mu.Unlock()
			c := b.dial(packet.V5)
			cp := &packet.Connect{Version: packet.V5, KeepAlive: 60, ClientID: "s"}
			keepSession(0)(cp)
			c.send(cp)
			eventually(t, "the backlog read", func() bool { fc.mu.Lock(); defer fc.mu.Unlock(); return fc.backlogs == 1 })
			p := connectTo(t, b, "p", false)
			for i, pl := range []string{"1", "2", "3", "4", "5"} {
				if rc := pubAck(t, p, "t", pl, 1, uint16(i+1)); rc != 0 {
					t.Fatalf("PUBACK 0x%02x", rc)
				}
			}
			eventually(t, "the reader past them", func() bool {
				fc.mu.Lock()
				defer fc.mu.Unlock()
				return b.clog.last.Load() == uint64(len(fc.log))
			})
			b.mu.Lock()
			s := b.sessions["s"]
			b.mu.Unlock()
			s.mu.Lock()
			waiting := len(s.cs.live)
			s.mu.Unlock()
			if n := b.Stats().Drops["queue_full"]; waiting != 2 || n != 3 {
				t.Errorf("while the backlog is read: %d messages wait, %d dropped queue_full; want 2 and 3", waiting, n)
			}
			close(gate)
			if ack := c.expect(packet.CONNACK).(*packet.Connack); ack.ReasonCode != 0 || !ack.SessionPresent {
				t.Fatalf("CONNACK 0x%02x, session present %v", ack.ReasonCode, ack.SessionPresent)
			}
			// Behind the backlog's "0": drop_new drops "2" too, drop_oldest "0".
			want := []string{"0", "1"}
			if policy == "drop_oldest" {
				want = []string{"4", "5"}
			}
			for _, pl := range want {
				m := c.expectPublish("t", pl)
				c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			}
			expectMarker(t, b, c, "t")
		})
	}
}

// TestClusterResumeCountsLogLimitOnce: the messages the log removed
// before a resuming session read them (Backlog's dropped, an upper
// bound: every removed sequence of its range) are counted log_limit at
// once (they cost one drop call each, under the client id's lock, which
// took longer than CONNECT may for a log that removed millions).
func TestClusterResumeCountsLogLimitOnce(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := offlineElsewhere(t, fc)
	pubAck(t, connectTo(t, a, "p", false), "t", "x", 1, 1)
	na.kill()
	const lost = 1 << 40
	fc.mu.Lock()
	fc.lost = lost
	fc.mu.Unlock()
	b, _ := clusterNode(t, fc)
	s := connectTo(t, b, "s", true, keepSession(0))
	if n := b.Stats().Drops["log_limit"]; n != lost {
		t.Errorf("log_limit drops %d, want %d", n, uint64(lost))
	}
	m := s.expectPublish("t", "x")
	s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
}
