package broker

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestSessionExpiry: a v5 session with a short expiry is gone after it.
func TestSessionExpiry(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	c := tb.connect("e", packet.V5, persistent(1))
	c.subscribe(1, "a", 1)
	c.close()
	eventually(t, "session expiry", func() bool { return tb.Stats().Sessions == 0 })
	c2 := tb.dial(packet.V5)
	if c2.connect("e", persistent(1)).SessionPresent {
		t.Fatal("session present after expiry")
	}
}

// TestSessionExpiryChangedOnDisconnect [MQTT-3.14.2-2]: DISCONNECT may set a
// new expiry; setting it to 0 ends the session at once.
func TestSessionExpiryChangedOnDisconnect(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	c := tb.connect("e", packet.V5, persistent(600))
	c.send(&packet.Disconnect{Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 0}})
	c.expectClosed()
	eventually(t, "session end", func() bool { return tb.Stats().Sessions == 0 })
}

// TestWillDelay [MQTT-3.1.3-9]: a delayed will is cancelled by a reconnect
// within the delay and sent after it otherwise.
func TestWillDelay(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V5)
	s.subscribe(1, "will", 0)
	delayed := func(p *packet.Connect) {
		withWill("will", "late")(p)
		p.WillProps.WillDelay = 1
		p.WillProps.Set(packet.PropWillDelay)
		persistent(60)(p)
	}
	w := tb.connect("w", packet.V5, delayed)
	w.close()
	eventually(t, "w seen gone", func() bool { return tb.Stats().ClientsConnected == 1 })
	m := tb.connect("m", packet.V5)
	m.publishMarker("will", 0)
	s.expectMarker("will") // not sent at once
	w2 := tb.dial(packet.V5)
	w2.connect("w", persistent(60))
	// Reconnected within the delay: the will is never sent. w3's will,
	// with the same delay from a later close, would come after it.
	w2.close()
	w3 := tb.connect("w3", packet.V5, func(p *packet.Connect) {
		delayed(p)
		p.WillPayload = []byte("late w3")
	})
	w3.close()
	start := time.Now()
	s.expectPublish("will", "late w3")
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("will sent after %v, before its delay", d)
	}
}

// TestWillAtSessionEnd: a will delay longer than the session expiry is cut
// short by the session's end.
func TestWillAtSessionEnd(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V5)
	s.subscribe(1, "will", 0)
	w := tb.connect("w", packet.V5, withWill("will", "end"), func(p *packet.Connect) {
		p.WillProps.WillDelay = 3600
		p.WillProps.Set(packet.PropWillDelay)
	}, persistent(1))
	w.close()
	s.expectPublish("will", "end")
}

// TestKeepAliveTimeout [MQTT-3.1.2-24]: a silent client is disconnected after
// 1.5 times its keep-alive, a v5 client with DISCONNECT 0x8D, and its will sent.
func TestKeepAliveTimeout(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V311)
	s.subscribe(1, "will", 0)
	c := tb.connect("k", packet.V5, withWill("will", "timeout"), func(p *packet.Connect) { p.KeepAlive = 1 })
	start := time.Now()
	c.expectDisconnect(0x8D)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v", d)
	}
	s.expectPublish("will", "timeout")
}

// TestConnectTimeout: a socket that sends no CONNECT is closed.

func TestConnectTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.ConnectTimeout = 200 * time.Millisecond
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	c := tb.dial(packet.V311)
	c.expectClosed()
}

// TestQueueOverflow: an offline session's queue is bounded; drop_new keeps
// the oldest, drop_oldest the newest, and every drop is counted.
func TestQueueOverflow(t *testing.T) {
	for _, policy := range []string{"drop_new", "drop_oldest"} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxQueuedMessages = 2
			cfg.QueueOverflow = policy
			tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
			s := tb.connect("s", packet.V5, persistent(600))
			s.subscribe(1, "q", 1)
			s.send(&packet.Disconnect{})
			s.expectClosed()
			p := tb.connect("p", packet.V5)
			for i := uint16(1); i <= 3; i++ {
				p.publish("q", string(rune('0'+i)), 1, false, i)
				p.expect(packet.PUBACK)
			}
			p.publish("q", "qos0", 0, false, 0)
			p.send(&packet.Pingreq{}) // the reader handled the QoS 0 publish
			p.expect(packet.PINGRESP)
			s2 := tb.dial(packet.V5)
			s2.connect("s", persistent(600))
			first := "1"
			if policy == "drop_oldest" {
				first = "2"
			}
			m := s2.expectPublish("q", first)
			s2.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			m = s2.expectPublish("q", string(rune(first[0]+1)))
			s2.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			p.publishMarker("q", 1) // after whatever the resumed session had queued
			s2.expectMarker("q")
			st := tb.Stats()
			if st.Drops["queue_full"] != 1 || st.Drops["offline"] != 1 {
				t.Fatalf("drops %v", st.Drops)
			}
		})
	}
}

// TestInflightWindow [MQTT-4.9.0-2]: never more unacknowledged QoS 1/2
// messages than the client's Receive Maximum.
func TestInflightWindow(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V5, func(p *packet.Connect) {
		p.Props.ReceiveMaximum = 2
		p.Props.Set(packet.PropReceiveMaximum)
	})
	s.subscribe(1, "w", 1)
	p := tb.connect("p", packet.V5)
	for i := uint16(1); i <= 4; i++ {
		p.publish("w", string(rune('0'+i)), 1, false, i)
		p.expect(packet.PUBACK)
	}
	m1 := s.expectPublish("w", "1")
	s.expectPublish("w", "2")
	p.publishMarker("w", 0) // QoS 0 passes the window that holds 3 and 4
	s.expectMarker("w")
	s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m1.PacketID})
	s.expectPublish("w", "3")
	p.publishMarker("w", 0)
	s.expectMarker("w")
}

// TestSharedRedispatch: QoS 1 messages a shared member got but did not
// acknowledge go to another member when its session ends.
func TestSharedRedispatch(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	m1 := tb.connect("m1", packet.V5)
	m1.subscribe(1, "$share/g/job", 1)
	p := tb.connect("p", packet.V5)
	p.publish("job", "a", 1, false, 1)
	p.expect(packet.PUBACK)
	m1.expectPublish("job", "a") // not acknowledged
	m2 := tb.connect("m2", packet.V311)
	m2.subscribe(1, "$share/g/job", 1)
	m1.close()
	m := m2.expectPublish("job", "a")
	m2.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
}

// TestSharedMemberEndedAfterPick: a copy for a shared member whose session
// ended after routing picked it (the pick is made under the index's lock,
// the delivery after it) goes to another member; with no member left it
// is counted as dropped in flight. It was dropped unseen.
func TestSharedMemberEndedAfterPick(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	m1 := tb.connect("m1", packet.V5)
	m1.subscribe(1, "$share/g/job", 1)
	m2 := tb.connect("m2", packet.V311)
	m2.subscribe(1, "$share/g/job", 1)
	tb.mu.Lock()
	s1 := tb.sessions["m1"]
	tb.mu.Unlock()
	m1.close()
	eventually(t, "m1's session to end", func() bool {
		s1.mu.Lock()
		defer s1.mu.Unlock()
		return s1.gone
	})
	deliverPicked := func(payload string) {
		sc := scratches.Get().(*scratch)
		sc.now = time.Now().UnixNano()
		tb.deliverTarget(&target{s: s1, qos: 1, group: "g", filter: "job"}, &Message{Topic: "job", Payload: []byte(payload), QoS: 1}, sc, nil)
		sc.reset()
		scratches.Put(sc)
	}
	deliverPicked("a")
	m := m2.expectPublish("job", "a")
	m2.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	m2.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"$share/g/job"}})
	m2.expect(packet.UNSUBACK)
	deliverPicked("b")
	if n := tb.Stats().Drops["inflight"]; n != 1 {
		t.Fatalf("%d copies dropped in flight with no member left, want 1", n)
	}
}

// elsewhereRouter is a cluster whose other nodes have members of every
// shared subscription, and whose turn it never is while this node has
// members: what it is handed goes to got.
type elsewhereRouter struct{ got chan *Message }

func (e elsewhereRouter) SharedTurn(_, _ string, local bool) SharedRoute {
	if local {
		return nil
	}
	return e
}

func (elsewhereRouter) MatchShared(string, func(group, filter string)) {}

func (e elsewhereRouter) DeliverShared(m *Message, _ Share, ack Acker) {
	if ack != nil {
		ack.Done(nil)
	}
	e.got <- m
}

// TestSharedMemberEndedGoesElsewhere: in a cluster, when the one member
// here ends, the copy it had not acknowledged, and a copy for it that
// routing picked it for just before, go to a member on another node
// rather than being dropped.
func TestSharedMemberEndedGoesElsewhere(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	er := elsewhereRouter{got: make(chan *Message, 1)}
	tb.SetSharedRouter(er)
	m1 := tb.connect("m1", packet.V5)
	m1.subscribe(1, "$share/g/job", 1)
	p := tb.connect("p", packet.V5)
	p.publish("job", "unacked", 1, false, 1)
	p.expect(packet.PUBACK)
	m1.expectPublish("job", "unacked")
	tb.mu.Lock()
	s1 := tb.sessions["m1"]
	tb.mu.Unlock()
	m1.close()
	select {
	case m := <-er.got:
		if string(m.Payload) != "unacked" {
			t.Fatalf("handed %q elsewhere, want unacked", m.Payload)
		}
	case <-time.After(waitTime):
		t.Fatalf("the unacknowledged copy was not handed to another node; drops %v", tb.Stats().Drops)
	}
	eventually(t, "m1's session to end", func() bool {
		s1.mu.Lock()
		defer s1.mu.Unlock()
		return s1.gone
	})
	sc := scratches.Get().(*scratch)
	sc.now = time.Now().UnixNano()
	tb.deliverTarget(&target{s: s1, qos: 1, group: "g", filter: "job"}, &Message{Topic: "job", Payload: []byte("a"), QoS: 1}, sc, nil)
	sc.reset()
	scratches.Put(sc)
	select {
	case m := <-er.got:
		if string(m.Payload) != "a" {
			t.Fatalf("handed %q elsewhere, want a", m.Payload)
		}
	default:
		t.Fatalf("not handed to another node; drops %v", tb.Stats().Drops)
	}
	if n := tb.Stats().Drops["inflight"]; n != 0 {
		t.Fatalf("%d copies dropped in flight, want 0", n)
	}
}

// denySecret denies client a every topic ending in /secret at delivery,
// as a deny rule narrower than a granted wildcard subscription does, and
// everyone x/all/secret.
type denySecret struct{ denyTopics }

func (denySecret) CanReceive(c *ClientInfo, m *Message) error {
	if c.ClientID == "a" && strings.HasSuffix(m.Topic, "/secret") || m.Topic == "x/all/secret" {
		return packet.ErrNotAuthorized
	}
	return nil
}

// TestSharedSkipsDeniedMember: a shared subscription's message goes to a
// member that may receive it, whoever's turn it is; none is dropped while
// one member may receive it, and one no member may receive is dropped once.
func TestSharedSkipsDeniedMember(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true, Authorizer: denySecret{}})
	a := tb.connect("a", packet.V5)
	a.subscribe(1, "$share/g/x/#", 0)
	a.subscribe(2, "m/a", 0)
	b := tb.connect("b", packet.V5)
	b.subscribe(1, "$share/g/x/#", 0)
	b.subscribe(2, "m/b", 0)
	p := tb.connect("p", packet.V5)
	for i := range 4 {
		p.publish("x/secret", strconv.Itoa(i), 0, false, 0)
	}
	for i := range 4 {
		b.expectPublish("x/secret", strconv.Itoa(i))
	}
	p.publishMarker("m/a", 0)
	a.expectMarker("m/a")
	if n := tb.Stats().Drops["not_authorized"]; n != 0 {
		t.Fatalf("%d messages dropped as not authorized, want 0", n)
	}
	p.publish("x/all/secret", "none", 0, false, 0)
	p.publishMarker("m/b", 0)
	b.expectMarker("m/b")
	if n := tb.Stats().Drops["not_authorized"]; n != 1 {
		t.Fatalf("%d messages dropped as not authorized, want 1", n)
	}
}

// TestSys publishes $SYS topics, matched only by filters starting with $.
func TestSys(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true, SysInterval: 20 * time.Millisecond, Version: "test"})
	all := tb.connect("all", packet.V311)
	all.subscribe(1, "#", 0)
	all.subscribe(2, "+/broker/version", 0)
	c := tb.connect("s", packet.V311)
	c.subscribe(1, "$SYS/broker/version", 0)
	c.expectPublish("$SYS/broker/version", "test") // retained, then every interval
	c.expectPublish("$SYS/broker/version", "test")
	all.publishMarker("m", 0) // after the $SYS messages c received [MQTT-4.7.2-1]
	all.expectMarker("m")
}

// TestMaxPacketSizeDropCounted: a copy over the client's Maximum Packet
// Size is dropped and counted.
func TestMaxPacketSizeDropCounted(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V5, func(p *packet.Connect) {
		p.Props.MaximumPacketSize = 32
		p.Props.Set(packet.PropMaximumPacketSize)
	})
	s.subscribe(1, "a", 0)
	p := tb.connect("p", packet.V5)
	p.publish("a", string(make([]byte, 64)), 0, false, 0)
	p.publish("a", "ok", 0, false, 0)
	s.expectPublish("a", "ok")
	if n := tb.Stats().Drops["packet_too_large"]; n != 1 {
		t.Fatalf("drops %d", n)
	}
}

// TestMessageExpiryDrop: an expired queued message is never delivered.

func TestMessageExpiryDrop(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V5, persistent(60))
	s.subscribe(1, "e", 1)
	s.send(&packet.Disconnect{})
	s.expectClosed()
	p := tb.connect("p", packet.V5)
	m := &packet.Publish{Topic: "e", Payload: []byte("gone"), QoS: 1, PacketID: 1}
	m.Props.MessageExpiry = 1
	m.Props.Set(packet.PropMessageExpiry)
	p.send(m)
	p.expect(packet.PUBACK)
	p.publish("e", "kept", 1, false, 2)
	p.expect(packet.PUBACK)
	deadline := time.Now().Add(1100 * time.Millisecond)
	eventually(t, "expiry", func() bool { return time.Now().After(deadline) })
	s2 := tb.dial(packet.V5)
	s2.connect("s", persistent(60))
	s2.expectPublish("e", "kept")
	if n := tb.Stats().Drops["expired"]; n != 1 {
		t.Fatalf("expired drops %d", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := config.Default().MQTT
	cfg.QueueOverflow = "drop_random"
	if _, err := New(Options{Config: cfg}); err == nil {
		t.Fatal("bad overflow policy accepted")
	}
}

// TestSlowSubscriber: a subscriber that does not read never blocks the
// publisher; QoS 0 over the outbound bound is dropped and counted, QoS 1
// waits in the session queue and is delivered once the subscriber reads.
func TestSlowSubscriber(t *testing.T) {
	cfg := testConfig()
	cfg.WriteTimeout = 20 * time.Second
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true, MaxOutboundBytes: 1024})
	s := tb.connect("slow", packet.V311)
	s.subscribe(1, "big", 1)
	p := tb.connect("p", packet.V311)
	payload := string(make([]byte, 100<<10))
	for i := 0; i < 200; i++ {
		p.publish("big", payload, 0, false, 0)
	}
	p.publish("big", "last", 1, false, 1)
	p.expect(packet.PUBACK) // the publisher was not blocked
	eventually(t, "drops", func() bool { return tb.Stats().Drops["outbound_full"] > 0 })
	for {
		m, err := s.read(waitTime)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if pb := m.(*packet.Publish); pb.QoS == 1 {
			if string(pb.Payload) != "last" {
				t.Fatalf("payload %q", pb.Payload[:8])
			}
			break
		}
	}
}

// while an interceptor holds a QoS 2 publish of the old connection; its late

// confirmation must not revive or corrupt the new session.

// while that many of its publishes are held the broker stops reading it.

// Acknowledgements are decoded from the read buffer in place (isAck). A v5
// subscriber's PUBRECs and PUBCOMPs with a reason string and user
// properties, all in one write and with a PUBREC failure among them, each
// move their own flow: PUBREL for the successes, none for the failure
// [MQTT-4.3.3-4], and the window they free lets the next messages out.
func TestAcksInOneWrite(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInflight = 3
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	sub := tb.connect("sub", packet.V5)
	sub.subscribe(1, "acks", 2)
	pub := tb.connect("pub", packet.V311)
	for i := range 3 {
		pub.publish("acks", strconv.Itoa(i), 2, false, uint16(i+1))
		pub.expect(packet.PUBREC)
	}
	var ids []uint16
	for i := range 3 {
		ids = append(ids, sub.expectPublish("acks", strconv.Itoa(i)).PacketID)
	}
	withProps := func(kind packet.Type, id uint16, code byte) packet.Packet {
		a := &packet.Ack{Kind: kind, PacketID: id, ReasonCode: code}
		a.Props.ReasonString = "from the test"
		a.Props.Set(packet.PropReasonString)
		a.Props.User = []packet.UserProperty{{Key: "k", Value: strings.Repeat("v", 300)}}
		a.Props.Set(packet.PropUser)
		return a
	}
	var b []byte
	for i, id := range ids {
		code := byte(0)
		if i == 1 {
			code = 0x80 // unspecified error: the flow ends here
		}
		b, _ = withProps(packet.PUBREC, id, code).Encode(b, packet.V5)
	}
	sub.write(b)
	got := map[uint16]bool{}
	for range 2 {
		got[sub.expect(packet.PUBREL).(*packet.Ack).PacketID] = true
	}
	if !got[ids[0]] || !got[ids[2]] || got[ids[1]] {
		t.Fatalf("PUBREL for %v, want for %d and %d only", got, ids[0], ids[2])
	}
	b = b[:0]
	b, _ = withProps(packet.PUBCOMP, ids[0], 0).Encode(b, packet.V5)
	b, _ = withProps(packet.PUBCOMP, ids[2], 0).Encode(b, packet.V5)
	sub.write(b)
	// Every slot of the window is free again: three more go out at once.
	for i := 3; i < 6; i++ {
		pub.publish("acks", strconv.Itoa(i), 2, false, uint16(i+1))
		pub.expect(packet.PUBREC)
	}
	for i := 3; i < 6; i++ {
		sub.expectPublish("acks", strconv.Itoa(i))
	}
}
