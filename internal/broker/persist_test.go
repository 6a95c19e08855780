package broker

import (
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
)

func persistent(expiry uint32) func(*packet.Connect) {
	return func(p *packet.Connect) {
		p.CleanStart = false
		if p.Version == packet.V5 {
			p.Props.SessionExpiry = expiry
			p.Props.Set(packet.PropSessionExpiry)
		}
	}
}

// TestPersistenceAcrossRestart restarts the broker on the same store: the

func TestPersistenceAcrossRestart(t *testing.T) {
	for _, kind := range []string{"memory", "bolt"} {
		t.Run(kind, func(t *testing.T) {
			var st store.Store
			if kind == "memory" {
				st = memStore(t)
			} else {
				bs, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { bs.Close() })
				st = bs
			}
			for _, v := range versions {
				t.Run(vname(v), func(t *testing.T) { testRestart(t, st, v) })
			}
		})
	}
}

func testRestart(t *testing.T, st store.Store, v packet.Version) {
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s := tb.connect("sub", v, persistent(3600))
	s.subscribe(1, "q/#", 2)
	// One message in flight, unacknowledged, when the broker stops.
	p := tb.connect("pub", v)
	p.publish("q/1", "inflight", 1, false, 1)
	p.expect(packet.PUBACK)
	s.expectPublish("q/1", "inflight")
	s.send(&packet.Disconnect{})
	s.expectClosed()
	p.publish("q/2", "queued", 2, false, 2)
	p.expect(packet.PUBREC)
	p.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
	p.expect(packet.PUBCOMP)
	p.publish("r", "retained", 1, true, 3)
	p.expect(packet.PUBACK)
	tb.stop()

	tb2 := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s2 := tb2.dial(v)
	ack := s2.connect("sub", persistent(3600))
	if !ack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	got := s2.expectPublish("q/1", "inflight")
	if !got.Dup {
		t.Error("in-flight message re-sent without DUP")
	}
	s2.send(&packet.Ack{Kind: packet.PUBACK, PacketID: got.PacketID})
	q := s2.expectPublish("q/2", "queued")
	if q.QoS != 2 {
		t.Errorf("queued qos %d", q.QoS)
	}
	s2.send(&packet.Ack{Kind: packet.PUBREC, PacketID: q.PacketID})
	s2.expect(packet.PUBREL)
	s2.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: q.PacketID})
	// The subscription survived: a new message arrives.
	p2 := tb2.connect("pub2", v)
	p2.publish("q/3", "live", 0, false, 0)
	s2.expectPublish("q/3", "live")
	// Retained survived.
	r := tb2.connect("late", v)
	r.subscribe(1, "r", 1)
	if m := r.expectPublish("r", "retained"); !m.Retain {
		t.Error("retained message without RETAIN")
	}
	// Clean up the session so the next version starts fresh.
	s2.send(&packet.Disconnect{})
	s2.expectClosed()
	c := tb2.connect("sub", v)
	c.send(&packet.Disconnect{})
	c.expectClosed()
	p2.publish("r", "", 1, true, 9)
	p2.expect(packet.PUBACK)
	tb2.stop()
}

// TestInboundQoS2SurvivesRestart: a QoS 2 packet id received before a restart

func TestInboundQoS2SurvivesRestart(t *testing.T) {
	st := memStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	p := tb.connect("pub", packet.V5, persistent(3600))
	p.publish("x", "once", 2, false, 5)
	p.expect(packet.PUBREC)
	p.close()
	tb.stop()
	tb2 := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s := tb2.connect("sub", packet.V5)
	s.subscribe(1, "x", 2)
	p2 := tb2.dial(packet.V5)
	if !p2.connect("pub", persistent(3600)).SessionPresent {
		t.Fatal("no session")
	}
	p2.send(&packet.Publish{Topic: "x", Payload: []byte("once"), QoS: 2, PacketID: 5, Dup: true})
	p2.expect(packet.PUBREC)
	p2.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 5})
	if a := p2.expect(packet.PUBCOMP).(*packet.Ack); a.ReasonCode != 0 {
		t.Fatalf("pubcomp 0x%02x", a.ReasonCode)
	}
	p2.publishMarker("x", 2) // after the duplicate, which is not routed again
	s.expectMarker("x")
}

// TestShutdown: v5 clients get DISCONNECT 0x8B, persistent sessions are

func TestShutdown(t *testing.T) {
	st := memStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	c5 := tb.connect("c5", packet.V5, persistent(600))
	c5.subscribe(1, "keep", 1)
	c3 := tb.connect("c3", packet.V311)
	tb.stop()
	c5.expectDisconnect(0x8B)
	if got := c3.expectClosed(); len(got) != 0 {
		t.Fatalf("v3 got %v", got)
	}
	n := 0
	st.Scan(store.Sessions, "", func(string, []byte) error { n++; return nil })
	if n != 1 {
		t.Fatalf("%d sessions stored", n)
	}
}

// TestWillAndExpiryAcrossRestart: a delayed will pending at shutdown is

func TestWillAndExpiryAcrossRestart(t *testing.T) {
	st := memStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	w := tb.connect("w", packet.V5, withWill("will", "after restart"), func(p *packet.Connect) {
		p.WillQoS = 1
		p.WillProps.WillDelay = 1
		p.WillProps.Set(packet.PropWillDelay)
	}, persistent(3600))
	w.close()
	short := tb.connect("short", packet.V5, persistent(1))
	short.subscribe(1, "x", 1)
	short.send(&packet.Disconnect{})
	short.expectClosed()
	s := tb.connect("s", packet.V5, persistent(3600))
	s.subscribe(1, "will", 1)
	s.send(&packet.Disconnect{})
	s.expectClosed()
	eventually(t, "will stored", func() bool {
		n := 0
		st.Scan(store.Wills, "", func(string, []byte) error { n++; return nil })
		return n == 1
	})
	tb.stop()
	// Let the short session's expiry pass while the broker is down.
	until := time.Now().Add(1100 * time.Millisecond)
	eventually(t, "expiry while down", func() bool { return time.Now().After(until) })

	tb2 := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s2 := tb2.dial(packet.V5)
	if !s2.connect("s", persistent(3600)).SessionPresent {
		t.Fatal("no session")
	}
	m := s2.expectPublish("will", "after restart")
	s2.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	c := tb2.dial(packet.V5)
	if c.connect("short", persistent(1)).SessionPresent {
		t.Fatal("expired session restored")
	}
}

// TestReleasedQoS2AcrossRestart: a QoS 2 delivery whose PUBREL was sent

func TestReleasedQoS2AcrossRestart(t *testing.T) {
	st := memStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s := tb.connect("s", packet.V5, persistent(3600))
	s.subscribe(1, "q", 2)
	p := tb.connect("p", packet.V5)
	p.publish("q", "x", 2, false, 1)
	p.expect(packet.PUBREC)
	m := s.expectPublish("q", "x")
	s.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
	s.expect(packet.PUBREL)
	tb.stop()
	tb2 := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s2 := tb2.dial(packet.V5)
	s2.connect("s", persistent(3600))
	if a := s2.expect(packet.PUBREL).(*packet.Ack); a.PacketID != m.PacketID {
		t.Fatalf("pubrel %d", a.PacketID)
	}
	s2.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})
	p2 := tb2.connect("p", packet.V5)
	p2.publishMarker("q", 2) // after whatever the resumed session had left
	s2.expectMarker("q")
}

// TestStoreClosedUnderBroker: a store that fails writes at once (closed)
// calls back inside Apply; the broker must neither deadlock nor ack as if
// the message were durable.
func TestStoreClosedUnderBroker(t *testing.T) {
	st := store.NewMemory()
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	s := tb.connect("s", packet.V5, persistent(600))
	s.subscribe(1, "q", 2)
	st.Close()
	p := tb.connect("p", packet.V5)
	p.publish("q", "x", 2, false, 1)
	if a := p.expect(packet.PUBREC).(*packet.Ack); a.ReasonCode < 0x80 {
		t.Fatalf("PUBREC 0x%02x for a message the store refused", a.ReasonCode)
	}
	m := s.expectPublish("q", "x")
	s.send(&packet.Ack{Kind: packet.PUBREC, PacketID: m.PacketID})
	s.expect(packet.PUBREL)
	s.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: m.PacketID})
	s.send(&packet.Pingreq{})
	s.expect(packet.PINGRESP)
}

// TestSessionRecordAuthState: the authenticator's state round-trips with a
// session record, and a record written before the state existed (ending
// after the subscriptions) still decodes, without one.
func TestSessionRecordAuthState(t *testing.T) {
	b := &Broker{}
	s := newSession(b, "dev-1")
	s.version = packet.V5
	s.subs = map[string]subOpts{"devices/dev-1/#": {QoS: 1, ID: 7}}
	s.info = &ClientInfo{ClientID: "dev-1", Username: "dev-1", AuthState: []byte(`{"su":true}`)}
	st := store.NewMemory()
	defer st.Close()
	b.store = st
	s.saveLocked()
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	var rec []byte
	st.Scan(store.Sessions, "", func(_ string, v []byte) error { rec = v; return nil })
	got, err := b.decodeSession("dev-1", rec)
	if err != nil || string(got.info.AuthState) != `{"su":true}` || got.info.Username != "dev-1" || got.subs["devices/dev-1/#"] != s.subs["devices/dev-1/#"] {
		t.Fatalf("round trip: %+v %+v %v", got.info, got.subs, err)
	}
	// The old form: the same record without the trailing state.
	old := rec[:len(rec)-1-len(`{"su":true}`)]
	got, err = b.decodeSession("dev-1", old)
	if err != nil || got.info.AuthState != nil || len(got.subs) != 1 {
		t.Fatalf("old record: %+v %+v %v", got.info, got.subs, err)
	}
}
