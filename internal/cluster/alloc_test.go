//go:build !race

package cluster

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
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

// TestInjectQoS0Bytes: a forwarded QoS 0 message is injected as a
// broker.Message alone (with its frame's copy), not in the 192 B that a
// QoS 1 one and its acknowledgement share. No subscriber matches, so
// routing adds nothing per message.
func TestInjectQoS0Bytes(t *testing.T) {
	nd := startNodes(t, 1)[0]
	m := &broker.Message{Topic: "nobody/t", Payload: make([]byte, 64)}
	frame := encodeMsg(nil, m, 0, 0, "n9", time.Now().UnixNano(), nil, onceID{})
	var batch []byte
	for range 100 {
		batch = binary.LittleEndian.AppendUint32(batch, uint32(len(frame)))
		batch = append(batch, frame...)
	}
	src := &inbound{}
	nd.r.injectBatch(batch, src) // warm: pools, the sender's name
	const rounds = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range rounds {
		nd.r.injectBatch(batch, src)
	}
	runtime.ReadMemStats(&after)
	per := float64(after.TotalAlloc-before.TotalAlloc) / (rounds * 100)
	t.Logf("%.0f bytes per injected QoS 0 message (frame %d bytes)", per, len(frame))
	if max := float64(128 + len(frame) + 48); per > max {
		t.Errorf("%.0f bytes per injected QoS 0 message, want at most %.0f (a Message and its frame's copy)", per, max)
	}
}
