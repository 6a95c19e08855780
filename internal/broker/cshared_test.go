package broker

import (
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// sharedMemberGone starts two nodes of a fake cluster and, on the first
// (a), a persistent session "s" whose only subscription is $share/g/t,
// disconnected with its record saved offline.
func sharedMemberGone(t *testing.T) (fc *fakeCluster, a *testBroker, na *fakeNode, b *testBroker) {
	fc = newFakeCluster(t)
	a, na = clusterNode(t, fc)
	b, _ = clusterNode(t, fc)
	leaveOffline(t, fc, a, "s", "$share/g/t", 2)
	return fc, a, na, b
}

// TestClusterSharedMemberResumesWithoutReplay: a persistent member of a
// shared group resumes on another node after its node died; the group's
// online member had every message, so the resumed one gets none of them
// (it got them all again when the log kept the group's messages under
// the inner filter and Backlog read them), only what comes after.
func TestClusterSharedMemberResumesWithoutReplay(t *testing.T) {
	_, a, na, b := sharedMemberGone(t)
	m := connectTo(t, a, "m", false)
	m.subscribe(1, "$share/g/t", 2)
	p := connectTo(t, a, "p", false)
	for i := 1; i <= 3; i++ {
		if rc := pubAck(t, p, "t", "x", 2, uint16(i)); rc != 0 {
			t.Fatalf("PUBREC 0x%02x", rc)
		}
		pm := m.expect(packet.PUBLISH).(*packet.Publish)
		m.send(&packet.Ack{Kind: packet.PUBREC, PacketID: pm.PacketID})
		m.expect(packet.PUBREL)
		m.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: pm.PacketID})
	}
	na.kill()
	s := connectTo(t, b, "s", true, keepSession(0))
	expectMarker(t, b, s, "t")
}

// TestClusterSharedQoS2StoredOnce: a QoS 2 publish for a shared group
// whose only member is persistent and offline is written to the log once,
// for the member (it was written twice: Store, as Persistent counted the
// group's filter, and the member's StoreFor), so after the node dies
// before the member's record is saved, the member resumes elsewhere and
// gets the message once.
func TestClusterSharedQoS2StoredOnce(t *testing.T) {
	fc, a, na, b := sharedMemberGone(t)
	p := connectTo(t, a, "p", false)
	fc.setHold("save", true)
	if rc := pubAck(t, p, "t", "once", 2, 1); rc != 0 {
		t.Fatalf("PUBREC 0x%02x", rc)
	}
	na.kill()
	fc.setHold("save", false)
	fc.release()
	s := connectTo(t, b, "s", true, keepSession(0))
	pm := s.expectPublish("t", "once")
	s.send(&packet.Ack{Kind: packet.PUBREC, PacketID: pm.PacketID})
	s.expect(packet.PUBREL)
	s.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: pm.PacketID})
	expectMarker(t, b, s, "t")
}

// expectMarker publishes a QoS 1 marker on tp at tb and fails unless it is
// the next packet c gets: nothing came before it.
func expectMarker(t *testing.T, tb *testBroker, c *client, tp string) {
	t.Helper()
	p := connectTo(t, tb, "marker", false)
	defer p.close()
	if rc := pubAck(t, p, tp, "marker", 1, 1); rc != 0 {
		t.Fatalf("marker: PUBACK 0x%02x", rc)
	}
	pm := c.expectPublish(tp, "marker")
	c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pm.PacketID})
}
