package broker

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// lossyRegistry is a Registry shared by the nodes of a test whose
// takeover requests are all lost: a claim replaces the id's holder and
// reports it (Claim.Prev), and the node that held the id is not told.
type lossyRegistry struct {
	mu    sync.Mutex
	last  uint64
	ids   map[string]ClaimHolder
	nodes int
}

// node is the Registry of one more node.
func (r *lossyRegistry) node() *lossyNode {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nodes++
	return &lossyNode{r: r, name: string(rune('a' + r.nodes - 1))}
}

type lossyNode struct {
	r    *lossyRegistry
	name string
}

func (n *lossyNode) Claim(_ context.Context, c *Claim) error {
	r := n.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]ClaimHolder{}
	}
	prev, ok := r.ids[c.ClientID]
	if ok {
		prev.Here = prev.Node == n.name
		c.Prev = prev
	}
	r.last++
	c.Token = r.last
	r.ids[c.ClientID] = ClaimHolder{Node: n.name, Token: c.Token}
	return nil
}

func (n *lossyNode) Release(string, uint64) {}

func (n *lossyNode) PutWill(*ClusterWill) (uint64, <-chan struct{}) {
	ch := make(chan struct{})
	close(ch)
	return 0, ch
}

func (n *lossyNode) TakeWill(_ string, _ uint64, publish func()) { go publish() }
func (n *lossyNode) DropWill(string, uint64)                     {}

// TestClusterStaleLocalCopy: node A never got the takeover of a session
// that moved to node C (the request was lost: a partition); the client
// comes back to A. A's copy is stale: A drops it (its old connection gets
// DISCONNECT 0x8E) and loads C's record, with the subscription made on C
// and the message queued for it there (fails when A resumes its own copy).
func TestClusterStaleLocalCopy(t *testing.T) {
	fc := newFakeCluster(t)
	reg := &lossyRegistry{}
	start := func() *testBroker {
		return startBroker(t, Options{AllowAnonymous: true, SessionStore: fc.node(t), Registry: reg.node()})
	}
	a, c := start(), start()
	old := connectTo(t, a, "s", false, keepSession(10))
	old.subscribe(1, "t/a", 1)
	s := connectTo(t, c, "s", true, keepSession(10)) // A is not told
	s.subscribe(1, "t/c", 1)
	s.send(&packet.Disconnect{})
	p := connectTo(t, c, "p", false)
	pubAck(t, p, "t/c", "for-c", 1, 1)
	s = connectTo(t, a, "s", true, keepSession(10))
	old.expectDisconnect(packet.ErrSessionTakenOver.Value)
	s.expectPublish("t/c", "for-c")
	pubAck(t, p, "t/a", "marker", 1, 2)
	s.expectPublish("t/a", "marker")
}

// TestClusterLateSaveFenced: node A never learnt that its session moved
// to node B (no takeover request); B's Load fenced the record. A's next
// Save (after a QoS 1 delivery its client acknowledged) is refused:
// A ends its session (DISCONNECT 0x8E) instead of overwriting B's record,
// which keeps the subscription made on B (fails with unconditional
// saves: A's client stays connected and B's record loses the filter).
func TestClusterLateSaveFenced(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	old := connectTo(t, a, "s", false, keepSession(10))
	old.subscribe(1, "t", 1)
	s := connectTo(t, b, "s", true, keepSession(10)) // A is not told
	s.subscribe(1, "t2", 1)
	p := connectTo(t, b, "p", false)
	pubAck(t, p, "t", "m", 1, 1)
	m := old.expectPublish("t", "m")
	old.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	old.expectDisconnect(packet.ErrSessionTakenOver.Value)
	if r := fc.record("s"); r == nil || !slices.Contains(r.Filters, "t2") {
		t.Fatalf("B's record was overwritten: %+v", r)
	}
	s.expectPublish("t", "m")
}

// TestClusterExpiryDeleteFenced: node A's session moved to node B without
// A being told (no takeover request); A's copy expires and deletes the
// record at the revision A last saw: refused, and B's record, with the
// subscription made on B, stays (fails with unconditional deletes).
func TestClusterExpiryDeleteFenced(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	expireSoon := func(p *packet.Connect) { keepSession(0)(p); p.Props.SessionExpiry = 1 }
	old := connectTo(t, a, "s", false, expireSoon)
	old.subscribe(1, "t", 1)
	old.send(&packet.Disconnect{})
	old.expectClosed()
	eventually(t, "A's record of the session offline", func() bool { r := fc.record("s"); return r != nil && r.DiscAt != 0 })
	s := connectTo(t, b, "s", true, keepSession(0)) // A is not told
	s.subscribe(1, "t2", 1)
	eventually(t, "A's expiry to delete the record", func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.deletes > 0
	})
	if r := fc.record("s"); r == nil || !slices.Contains(r.Filters, "t2") {
		t.Fatalf("A's expiry deleted B's record: %+v", r)
	}
}

// TestClusterDeleteAfterSaveInFlight: a session stops being persistent
// (its client comes back with a Session Expiry Interval of 0) while the
// Save of its disconnect is in flight: the record is deleted once that
// Save is answered, at the revision it gave (fails when the delete is
// made at once at the revision before it: refused, the record stays).
func TestClusterDeleteAfterSaveInFlight(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(0))
	s.subscribe(1, "t", 1)
	fc.mu.Lock()
	fc.early = true
	fc.mu.Unlock()
	fc.setHold("save", true)
	s.send(&packet.Disconnect{})
	s.expectClosed()
	eventually(t, "the disconnect's Save in flight", func() bool { return fc.heldCount() == 1 })
	s = connectTo(t, a, "s", true, func(p *packet.Connect) { p.CleanStart = false })
	fc.setHold("save", false)
	fc.release()
	eventually(t, "the record deleted", func() bool { return fc.record("s") == nil })
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}
