package broker

import (
	"sync/atomic"
	"testing"
)

// failStoreNode is a node of the fake cluster whose Store fails on demand.
type failStoreNode struct {
	*fakeNode
	fail atomic.Bool
}

func (n *failStoreNode) Store(m *Message, done func(uint64, error)) {
	if n.fail.Load() {
		go done(0, errFakeQuorum)
		return
	}
	n.fakeNode.Store(m, done)
}

// TestClusterInboundQoS2IDReused: a persistent session's inbound QoS 2
// packet id is free again on any node once its flow ended on the node
// that died: refused (its Store failed, PUBREC 0x80; the id stayed in the
// record, so the client's next QoS 2 message with that id, on another
// node, was answered PUBREC 0 and swallowed as a resend), or completed
// (PUBCOMP).
func TestClusterInboundQoS2IDReused(t *testing.T) {
	for _, refused := range []bool{true, false} {
		name := map[bool]string{true: "refused", false: "completed"}[refused]
		t.Run(name, func(t *testing.T) {
			fc := newFakeCluster(t)
			n := &failStoreNode{fakeNode: fc.node(t)}
			a := startBroker(t, Options{AllowAnonymous: true, SessionStore: n})
			b, _ := clusterNode(t, fc)
			s := connectTo(t, a, "s", false, keepSession(0))
			q := connectTo(t, a, "q", false, keepSession(0))
			q.subscribe(1, "t", 1) // makes t persistent
			n.fail.Store(refused)
			if rc := pubAck(t, s, "t", name, 2, 7); refused != (rc == 0x80) {
				t.Fatalf("PUBREC 0x%02x", rc)
			}
			n.kill()
			s.close()
			r := connectTo(t, b, "r", false)
			r.subscribe(1, "t", 1)
			s = connectTo(t, b, "s", true, keepSession(0))
			if rc := pubAck(t, s, "t", "new", 2, 7); rc != 0 {
				t.Fatalf("PUBREC 0x%02x on the other node", rc)
			}
			r.expectPublish("t", "new")
		})
	}
}
