package broker

import (
	"errors"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// clusterNode starts a broker on a node of the fake cluster.
func clusterNode(t *testing.T, fc *fakeCluster) (*testBroker, *fakeNode) {
	n := fc.node(t)
	return startBroker(t, Options{AllowAnonymous: true, SessionStore: n}), n
}

// keepSession is a CONNECT option: clean start 0, a session expiry, and a
// receive maximum (the in-flight window) of recvMax.
func keepSession(recvMax uint16) func(*packet.Connect) {
	return func(p *packet.Connect) {
		p.CleanStart = false
		if p.Version == packet.V5 {
			p.Props.SessionExpiry = 300
			p.Props.Set(packet.PropSessionExpiry)
			if recvMax > 0 {
				p.Props.ReceiveMaximum = recvMax
				p.Props.Set(packet.PropReceiveMaximum)
			}
		}
	}
}

// connectTo connects a client to tb expecting reason 0 and sessionPresent.
func connectTo(t *testing.T, tb *testBroker, id string, present bool, opt ...func(*packet.Connect)) *client {
	t.Helper()
	c := tb.dial(packet.V5)
	ack := c.connect(id, opt...)
	if ack.ReasonCode != 0 || ack.SessionPresent != present {
		t.Fatalf("connect %q: reason 0x%02x, session present %v (want %v)", id, ack.ReasonCode, ack.SessionPresent, present)
	}
	return c
}

// pubAck publishes and reads the PUBACK (QoS 1) or PUBREC (QoS 2),
// releasing a QoS 2 flow; it returns the reason code.
func pubAck(t *testing.T, c *client, topic, payload string, qos byte, pid uint16) byte {
	t.Helper()
	c.publish(topic, payload, qos, false, pid)
	if qos == 1 {
		return c.expect(packet.PUBACK).(*packet.Ack).ReasonCode
	}
	rc := c.expect(packet.PUBREC).(*packet.Ack).ReasonCode
	if rc < 0x80 {
		c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: pid})
		c.expect(packet.PUBCOMP)
	}
	return rc
}

// TestClusterPublishStoredBeforePuback: a QoS 1 publish that a persistent
// session of the cluster (here: of another node, offline) subscribes to is
// acknowledged only once the store has it, and the session finds it on
// any node; a store that fails makes PUBACK 0x80.
func TestClusterPublishStoredBeforePuback(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	s := connectTo(t, b, "s", false, keepSession(0))
	if sa := s.subscribe(1, "t/#", 1); sa.ReasonCodes[0] != 1 {
		t.Fatalf("SUBACK %v", sa.ReasonCodes)
	}
	s.send(&packet.Disconnect{})
	s.expectClosed()
	eventually(t, "the session's record saved offline", func() bool {
		r := fc.record("s")
		return r != nil && r.DiscAt != 0
	})

	p := connectTo(t, a, "p", false)
	fc.setHold("store", true)
	p.publish("t/1", "one", 1, false, 1)
	eventually(t, "the store write", func() bool { return fc.heldCount() == 1 })
	p.send(&packet.Pingreq{})
	p.expect(packet.PINGRESP) // nothing before it: the PUBACK waits for the store
	fc.setHold("store", false)
	fc.release()
	if rc := p.expect(packet.PUBACK).(*packet.Ack).ReasonCode; rc != 0 {
		t.Fatalf("PUBACK 0x%02x", rc)
	}
	fc.setFail(true)
	if rc := pubAck(t, p, "t/2", "lost", 1, 2); rc != packet.ErrUnspecified.Value {
		t.Fatalf("PUBACK 0x%02x with the store failing, want 0x80", rc)
	}
	fc.setFail(false)
	if rc := pubAck(t, p, "t/3", "three", 1, 3); rc != 0 {
		t.Fatalf("PUBACK 0x%02x", rc)
	}
	// The session resumes on node a, which never saw it.
	s = connectTo(t, a, "s", true, keepSession(0))
	for _, want := range []string{"one", "three"} {
		m := s.expect(packet.PUBLISH).(*packet.Publish)
		if string(m.Payload) != want || m.QoS != 1 {
			t.Fatalf("got %q QoS %d, want %q", m.Payload, m.QoS, want)
		}
		s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}

// TestClusterResumeElsewhere: a persistent session with QoS 1 and 2
// messages in flight and queued on node a, which dies; the client resumes
// on node b: session present, the in-flight messages again with DUP and
// their packet ids, then the queued ones in order, then new ones, and
// nothing twice.
func TestClusterResumeElsewhere(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(2))
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "t/#", QoS: 2}}})
	s.expect(packet.SUBACK)
	p := connectTo(t, a, "p", false)
	msgs := []struct {
		payload string
		qos     byte
	}{{"m1", 1}, {"m2", 2}, {"m3", 1}, {"m4", 2}, {"m5", 1}}
	for i, m := range msgs {
		if rc := pubAck(t, p, "t/x", m.payload, m.qos, uint16(i+1)); rc != 0 {
			t.Fatalf("publish %s: 0x%02x", m.payload, rc)
		}
	}
	// The window holds m1 and m2: read, unacknowledged.
	first := map[string]uint16{}
	for _, want := range msgs[:2] {
		m := s.expect(packet.PUBLISH).(*packet.Publish)
		if string(m.Payload) != want.payload || m.Dup {
			t.Fatalf("got %q dup %v, want %q", m.Payload, m.Dup, want.payload)
		}
		first[want.payload] = m.PacketID
	}
	// A SUBSCRIBE's SUBACK comes after a Save, which has the window.
	s.send(&packet.Subscribe{PacketID: 9, Subscriptions: []packet.Subscription{{Filter: "other", QoS: 1}}})
	s.expect(packet.SUBACK)
	na.kill()
	s.close()

	s = connectTo(t, b, "s", true, keepSession(10))
	for _, want := range msgs[:2] {
		m := s.expect(packet.PUBLISH).(*packet.Publish)
		if string(m.Payload) != want.payload || !m.Dup || m.PacketID != first[want.payload] || m.QoS != want.qos {
			t.Fatalf("in flight: got %q dup %v id %d QoS %d, want %q dup with id %d QoS %d",
				m.Payload, m.Dup, m.PacketID, m.QoS, want.payload, first[want.payload], want.qos)
		}
	}
	p = connectTo(t, b, "p", false)
	if rc := pubAck(t, p, "t/x", "m6", 2, 1); rc != 0 {
		t.Fatalf("publish m6: 0x%02x", rc)
	}
	for _, want := range []string{"m3", "m4", "m5", "m6"} {
		m := s.expect(packet.PUBLISH).(*packet.Publish)
		if string(m.Payload) != want || m.Dup {
			t.Fatalf("got %q dup %v, want %q", m.Payload, m.Dup, want)
		}
	}
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}

// TestClusterInflightUnreadableRefuses: a session that resumes while
// the log cannot be read (no leader yet after a partition heals) is
// refused (0x88) rather than resumed without its in-flight messages; the
// client comes back and gets them again. The fault suite lost five
// acknowledged messages this way when Get's "unavailable" counted as
// "removed by the log's limits".
func TestClusterInflightUnreadableRefuses(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(1))
	s.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "t", QoS: 1}}})
	s.expect(packet.SUBACK)
	p := connectTo(t, a, "p", false)
	if rc := pubAck(t, p, "t", "m1", 1, 1); rc != 0 {
		t.Fatalf("publish: 0x%02x", rc)
	}
	first := s.expect(packet.PUBLISH).(*packet.Publish) // in flight, unacknowledged
	s.send(&packet.Subscribe{PacketID: 9, Subscriptions: []packet.Subscription{{Filter: "other", QoS: 1}}})
	s.expect(packet.SUBACK) // after a Save, which has the window
	na.kill()
	s.close()

	fc.mu.Lock()
	fc.getErr = errors.New("fake store: JetStream system temporarily unavailable")
	fc.mu.Unlock()
	c := b.dial(packet.V5)
	if ack := c.connect("s", keepSession(1)); ack.ReasonCode != packet.ErrServerUnavailable.Value {
		t.Fatalf("resume with the log unreadable: reason 0x%02x session present %v, want 0x88",
			ack.ReasonCode, ack.SessionPresent)
	}
	c.close()
	fc.mu.Lock()
	fc.getErr = nil
	fc.mu.Unlock()
	s = connectTo(t, b, "s", true, keepSession(1))
	m := s.expect(packet.PUBLISH).(*packet.Publish)
	if string(m.Payload) != "m1" || !m.Dup || m.PacketID != first.PacketID {
		t.Fatalf("got %q dup %v id %d, want m1 again with DUP and id %d", m.Payload, m.Dup, m.PacketID, first.PacketID)
	}
}

// TestClusterQoS2SavedBeforeSend: a QoS 2 message goes out only once the
// record with its packet id is saved, and its PUBREL once the released
// state is.
func TestClusterQoS2SavedBeforeSend(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(0))
	s.subscribe(1, "t", 2)
	p := connectTo(t, a, "p", false)
	// heldSave runs send with Saves held, checks that nothing reaches s
	// before the Save is done, and releases it.
	heldSave := func(what string, send func()) {
		t.Helper()
		fc.setHold("save", true)
		send()
		eventually(t, "the Save of "+what, func() bool { return fc.heldCount() > 0 })
		s.send(&packet.Pingreq{})
		s.expect(packet.PINGRESP) // nothing before it: waiting for the Save
		fc.setHold("save", false)
		fc.release()
	}
	heldSave("the packet id", func() {
		p.publish("t", "x", 2, false, 1)
		p.expect(packet.PUBREC)
	})
	m := s.expect(packet.PUBLISH).(*packet.Publish)
	heldSave("the released state", func() { s.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID}) })
	s.expect(packet.PUBREL)
}

// TestClusterRefusals: without the store (no quorum), a persistent
// session's CONNECT gets 0x88 (3.1.1: 3), its SUBSCRIBE 0x80, and a
// publish for it PUBACK 0x80.
func TestClusterRefusals(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(0))
	s.subscribe(1, "t", 1)
	p := connectTo(t, a, "p", false)
	fc.setFail(true)
	sa := s.subscribe(2, "u", 1)
	if sa.ReasonCodes[0] != packet.ErrUnspecified.Value {
		t.Fatalf("SUBACK 0x%02x, want 0x80", sa.ReasonCodes[0])
	}
	if rc := pubAck(t, p, "t", "x", 1, 1); rc != packet.ErrUnspecified.Value {
		t.Fatalf("PUBACK 0x%02x, want 0x80", rc)
	}
	c := a.dial(packet.V5)
	if ack := c.connect("n", keepSession(0)); ack.ReasonCode != packet.ErrServerUnavailable.Value {
		t.Fatalf("CONNACK 0x%02x, want 0x88", ack.ReasonCode)
	}
	c3 := a.dial(packet.V311)
	if ack := c3.connect("n3", keepSession(0)); ack.ReasonCode != 3 {
		t.Fatalf("3.1.1 CONNACK %d, want 3", ack.ReasonCode)
	}
	fc.setFail(false)
	// The refused filter was not kept: a message on it does not come, the
	// marker on t does.
	pubAck(t, p, "u", "no", 1, 2)
	pubAck(t, p, "t", "yes", 1, 3)
	s.expectPublish("t", "yes")
}

// TestClusterTakeoverMovesSession: a takeover from another node (the
// registry's Supersede) saves the session's final record before it
// returns; the other node resumes it with what was in flight and queued.
func TestClusterTakeoverMovesSession(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(1))
	s.subscribe(1, "t", 1)
	p := connectTo(t, a, "p", false)
	for i, pl := range []string{"a", "b", "c"} {
		pubAck(t, p, "t", pl, 1, uint16(i+1))
	}
	m := s.expectPublish("t", "a")
	if !a.Supersede("s", 0, false) {
		t.Fatal("Supersede found no session")
	}
	s.expectDisconnect(packet.ErrSessionTakenOver.Value)
	s = connectTo(t, b, "s", true, keepSession(10))
	got := s.expect(packet.PUBLISH).(*packet.Publish)
	if string(got.Payload) != "a" || !got.Dup || got.PacketID != m.PacketID {
		t.Fatalf("got %q dup %v id %d, want a dup id %d", got.Payload, got.Dup, got.PacketID, m.PacketID)
	}
	s.expectPublish("t", "b")
	s.expectPublish("t", "c")
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}

// TestClusterInboundQoS2Moves: a persistent publisher's QoS 2 packet id
// is in its record before PUBREC, so that, resumed on another node, the
// PUBLISH it sends again is recognised and not routed twice; PUBCOMP
// comes once the record without it is saved.
func TestClusterInboundQoS2Moves(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	sub := connectTo(t, b, "sub", false, keepSession(0)) // persistent: a's publish reaches it through the log
	sub.subscribe(1, "t", 2)
	p := connectTo(t, a, "p", false, keepSession(0))
	p.publish("t", "once", 2, false, 7)
	p.expect(packet.PUBREC)
	na.kill()
	p.close()
	p = connectTo(t, b, "p", true, keepSession(0))
	p.send(&packet.Publish{Topic: "t", Payload: []byte("once"), QoS: 2, PacketID: 7, Dup: true})
	p.expect(packet.PUBREC)
	fc.setHold("save", true)
	p.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	eventually(t, "the Save without the packet id", func() bool { return fc.heldCount() > 0 })
	p.send(&packet.Pingreq{})
	p.expect(packet.PINGRESP) // no PUBCOMP before the Save
	fc.setHold("save", false)
	fc.release()
	p.expect(packet.PUBCOMP)
	p.publish("t", "marker", 1, false, 8)
	p.expect(packet.PUBACK)
	var got []string
	for len(got) == 0 || got[len(got)-1] != "marker" {
		m := sub.expect(packet.PUBLISH).(*packet.Publish)
		got = append(got, string(m.Payload))
	}
	if len(got) != 2 || got[0] != "once" {
		t.Fatalf("subscriber got %q, want once, marker (a QoS 2 message routed twice?)", got)
	}
}

// TestClusterBacklogQueueLimit: what a session reads back from the log
// when it resumes is bounded by its queue limits like any delivery: the
// overflow is dropped (drop_new: the newest) and counted queue_full, and
// the cursor passes it.
func TestClusterBacklogQueueLimit(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := clusterNode(t, fc)
	cfg := testConfig()
	cfg.MaxQueuedMessages = 2
	nb := fc.node(t)
	b := startBroker(t, Options{AllowAnonymous: true, SessionStore: nb, Config: cfg})
	s := connectTo(t, a, "s", false, keepSession(0))
	s.subscribe(1, "t", 1)
	s.send(&packet.Disconnect{})
	s.expectClosed()
	p := connectTo(t, a, "p", false)
	for i, pl := range []string{"1", "2", "3", "4", "5"} {
		if rc := pubAck(t, p, "t", pl, 1, uint16(i+1)); rc != 0 {
			t.Fatalf("PUBACK 0x%02x", rc)
		}
	}
	// b's reader past them: the session reads them as its backlog (from
	// the reader after CONNACK, its in-flight window would take two).
	eventually(t, "b's reader to pass the messages", func() bool { return nb.Head() >= 5 })
	na.kill()
	s = connectTo(t, b, "s", true, keepSession(0))
	for _, want := range []string{"1", "2"} {
		m := s.expectPublish("t", want)
		s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
	if n := b.Stats().Drops["queue_full"]; n != 3 {
		t.Fatalf("queue_full drops %d, want 3", n)
	}
	// The cursor passed the dropped ones: resumed again elsewhere, the
	// session gets nothing more.
	s.send(&packet.Subscribe{PacketID: 2, Subscriptions: []packet.Subscription{{Filter: "x", QoS: 1}}})
	s.expect(packet.SUBACK) // a Save with the cursor
	s.send(&packet.Disconnect{})
	s.expectClosed()
	c := startBroker(t, Options{AllowAnonymous: true, SessionStore: fc.node(t)})
	s = connectTo(t, c, "s", true, keepSession(0))
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}

// TestClusterCleanStartDeletes: a clean start deletes the session's record
// (on another node too), and a client id without one costs no Delete.
func TestClusterCleanStartDeletes(t *testing.T) {
	fc := newFakeCluster(t)
	a, _ := clusterNode(t, fc)
	b, _ := clusterNode(t, fc)
	connectTo(t, b, "fresh", false).close()
	fc.mu.Lock()
	n := fc.deletes
	fc.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d Deletes for a client id without a record", n)
	}
	s := connectTo(t, a, "s", false, keepSession(0))
	s.subscribe(1, "t", 1)
	s.send(&packet.Disconnect{})
	s.expectClosed()
	eventually(t, "the record saved offline", func() bool { r := fc.record("s"); return r != nil && r.DiscAt != 0 })
	connectTo(t, b, "s", false).close() // clean start
	if fc.record("s") != nil {
		t.Fatal("record kept after a clean start")
	}
	c, _ := clusterNode(t, fc) // without a session of its own: it loads
	s = connectTo(t, c, "s", false, keepSession(0))
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}

// TestClusterDoneAboveCursor: messages completed after one still in
// flight are not delivered again when the session moves (the record says
// which messages above its cursor are still owed), twice over.
func TestClusterDoneAboveCursor(t *testing.T) {
	fc := newFakeCluster(t)
	a, na := clusterNode(t, fc)
	b, nb := clusterNode(t, fc)
	c, _ := clusterNode(t, fc)
	s := connectTo(t, a, "s", false, keepSession(2))
	s.subscribe(1, "t", 2)
	p := connectTo(t, a, "p", false)
	pubAck(t, p, "t", "stuck", 2, 1)
	for i, pl := range []string{"m2", "m3", "m4"} {
		pubAck(t, p, "t", pl, 1, uint16(i+2))
	}
	stuck := s.expectPublish("t", "stuck") // never acknowledged
	for _, want := range []string{"m2", "m3", "m4"} {
		m := s.expectPublish("t", want)
		s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
	s.subscribe(2, "x", 1) // a Save after the PUBACKs
	na.kill()
	s.close()
	for _, n := range []struct {
		tb   *testBroker
		kill func()
	}{{b, nb.kill}, {c, func() {}}} {
		s = connectTo(t, n.tb, "s", true, keepSession(10))
		m := s.expect(packet.PUBLISH).(*packet.Publish)
		if string(m.Payload) != "stuck" || !m.Dup || m.PacketID != stuck.PacketID {
			t.Fatalf("got %q dup %v id %d, want stuck again", m.Payload, m.Dup, m.PacketID)
		}
		s.send(&packet.Pingreq{})
		s.expect(packet.PINGRESP) // and nothing else
		s.subscribe(3, "y", 1)
		n.kill()
		s.close()
	}
}
