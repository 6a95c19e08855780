package cluster_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestDeadNodeSessionExpires: a persistent session (expiry 2 s) whose
// client is still connected when its node is SIGKILLed, and never comes
// back: its record expires 2 s after the node is seen dead and a core's
// sweep deletes it (every 30 s), so its client id resumes nothing (fails
// when records of connected clients never expire: the sweep never comes
// and the session is present).
func TestDeadNodeSessionExpires(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Replicants: 1, ClusterExtra: "node_timeout: 1s"})
	r := c.Nodes[3]
	var s *raw
	eventually(t, "the replicant to keep a persistent session", func() bool {
		var ack *packet.Connack
		s, ack = dialRawExpiry(t, r.MQTT(), "gone", packet.V5, 10, 2)
		if s != nil && ack.ReasonCode != 0 {
			s.nc.Close()
			s = nil
		}
		return s != nil
	})
	if rc, _ := s.subscribe(1, "t/gone/#", 1); rc != 1 {
		t.Fatalf("SUBACK 0x%02x", rc)
	}
	r.Kill()
	killed := time.Now()
	swept := regexp.MustCompile(`expired session records deleted`)
	deadline := killed.Add(60 * time.Second) // node_timeout, expiry, and the sweep's 30 s
	for sweptBy := ""; sweptBy == ""; {
		for _, n := range c.Nodes[:3] {
			if swept.MatchString(n.Log()) {
				sweptBy = n.Name
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead node's record was not swept within 60 s")
		}
		time.Sleep(50 * time.Millisecond) // polling the logs
	}
	if el := time.Since(killed); el < 3*time.Second || el > 40*time.Second {
		t.Errorf("swept %v after the kill, want 3 s (node_timeout and expiry) to 40 s (and the sweep)", el)
	}
	s2, ack := dialRawExpiry(t, c.Nodes[0].MQTT(), "gone", packet.V5, 10, 2)
	if s2 == nil || ack.ReasonCode != 0 || ack.SessionPresent {
		t.Fatalf("the expired session came back: %+v", ack)
	}
}
