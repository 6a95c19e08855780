package broker

import (
	"slices"
	"sync"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// filterEvents records the subscribe hooks' events as "+filter/qos" and
// "-filter": what the cluster announces to the other nodes.
type filterEvents struct {
	mu  sync.Mutex
	got []string
}

func (h *filterEvents) OnSubscribe(_ *ClientInfo, f string, qos byte) {
	h.mu.Lock()
	h.got = append(h.got, "+"+f+"/"+string('0'+qos))
	h.mu.Unlock()
}

func (h *filterEvents) OnUnsubscribe(_ *ClientInfo, f string) {
	h.mu.Lock()
	h.got = append(h.got, "-"+f)
	h.mu.Unlock()
}

// take returns the events since the last take.
func (h *filterEvents) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	got := h.got
	h.got = nil
	return got
}

// TestClusterFailedSubscriptionChangeKeepsOld: a persistent session's
// SUBSCRIBE or UNSUBSCRIBE whose record is not saved (0x80) leaves the
// session's subscriptions as they were, which is what its record still
// has: a SUBSCRIBE that replaced a filter keeps the old one (it was
// removed), a new filter is removed and its announcement withdrawn (it
// stayed announced), and an UNSUBSCRIBE's filters are subscribed again
// (they stayed removed).
func TestClusterFailedSubscriptionChangeKeepsOld(t *testing.T) {
	fc := newFakeCluster(t)
	h := &filterEvents{}
	a := startBroker(t, Options{AllowAnonymous: true, SessionStore: fc.node(t), Hooks: []Hook{h}})
	s := connectTo(t, a, "s", false, keepSession(0))
	s.subscribe(1, "t", 1)
	p := connectTo(t, a, "p", false)
	h.take()

	fc.setFail(true)
	s.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "t", QoS: 0}, {Filter: "u", QoS: 1}, {Filter: "t", QoS: 2}}})
	if sa := s.expect(packet.SUBACK).(*packet.Suback); !slices.Equal(sa.ReasonCodes, []byte{0x80, 0x80, 0x80}) {
		t.Fatalf("SUBACK %v, want 0x80 0x80 0x80", sa.ReasonCodes)
	}
	if got := h.take(); !slices.Equal(got, []string{"+t/0", "+u/1", "+t/2", "+t/1", "-u"}) {
		t.Errorf("announcements %q: want t/0, u/1, t/2, then t/1 back and u withdrawn", got)
	}
	fc.setFail(false)
	pubAck(t, p, "u", "not subscribed", 1, 1)
	pubAck(t, p, "t", "qos 1", 1, 2)
	if m := s.expectPublish("t", "qos 1"); m.QoS != 1 {
		t.Fatalf("QoS %d: the refused SUBSCRIBE's QoS 0 was kept", m.QoS)
	}
	s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: 1})

	fc.setFail(true)
	s.send(&packet.Unsubscribe{PacketID: 3, Filters: []string{"t"}})
	if ua := s.expect(packet.UNSUBACK).(*packet.Unsuback); !slices.Equal(ua.ReasonCodes, []byte{0x80}) {
		t.Fatalf("UNSUBACK %v, want 0x80", ua.ReasonCodes)
	}
	if got := h.take(); !slices.Equal(got, []string{"-t", "+t/1"}) {
		t.Errorf("announcements %q: want t withdrawn then back", got)
	}
	fc.setFail(false)
	pubAck(t, p, "t", "still", 1, 3)
	s.expectPublish("t", "still")
	eventually(t, "the record saved again", func() bool {
		r := fc.record("s")
		return r != nil && slices.Equal(r.Filters, []string{"t"})
	})
}
