//go:build !race

package cluster

import (
	"runtime"
	"testing"
)

// TestForwardAllocs: what a message forwarded to another node allocates
// in this process, both nodes and the raw clients (which allocate nothing
// per message) included, through fan-in 10:1 with the subscriber on the
// other node. The race detector allocates on its own: not built with it.
func TestForwardAllocs(t *testing.T) {
	ns := startNodes(t, 2)
	const n = 20000
	for _, c := range []struct {
		qos byte
		// 12 and 18.5 before the frame's strings aliased it; QoS 1 10.5
		// before an injected message, its wait and its acknowledgement
		// were one allocation (injected).
		max float64
		// maxBytes: about 1,770 (QoS 0) and 1,580 (QoS 1) while a
		// broker.Message held its properties inline (392 B; one on each
		// node per forwarded message), 1,160 and 1,040 since.
		maxBytes float64
	}{{0, 5.5, 1400}, {1, 9, 1300}} {
		var before, after runtime.MemStats
		fanIn(t, ns[0], ns[1], c.qos, int(c.qos), n,
			func() { runtime.ReadMemStats(&before) }, func() { runtime.ReadMemStats(&after) })
		per := float64(after.Mallocs-before.Mallocs) / n
		bytes := float64(after.TotalAlloc-before.TotalAlloc) / n
		t.Logf("QoS %d: %.1f allocations, %.0f bytes per forwarded message", c.qos, per, bytes)
		if per > c.max {
			t.Errorf("QoS %d: %.1f allocations per forwarded message, want at most %v", c.qos, per, c.max)
		}
		if bytes > c.maxBytes {
			t.Errorf("QoS %d: %.0f bytes allocated per forwarded message, want at most %v", c.qos, bytes, c.maxBytes)
		}
	}
}
