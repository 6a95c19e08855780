package integration

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/server"
	"github.com/eclipse/paho.golang/paho"
)

// durable returns a config mod that keeps state in dir.
func durable(dir string) func(*config.Config) {
	return func(c *config.Config) { c.DataDir = dir }
}

// stopBroker shuts srv down now (its cleanup then does nothing).
func stopBroker(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestQoS2StateSurvivesRestart proves both halves of QoS 2 survive a
// restart on the same data dir: an inbound message that got PUBREC is
// completed by a PUBREL sent after the restart (PUBCOMP success, not 0x92)
// and delivered exactly once [MQTT-4.3.3]; an outbound message the
// subscriber PUBREC'd gets its PUBREL resent after the restart
// [MQTT-4.4.0-1].
func TestQoS2StateSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startBroker(t, durable(dir))
	addr := tcpAddr(t, srv)

	sub, _ := persistentRaw(t, addr, "q2-sub", true)
	sub.subscribe(1, subID(0), rawSub("q2r/#", 2))
	pubc, _ := persistentRaw(t, addr, "q2-pub", true)

	// Outbound half: delivered, PUBREC'd, PUBREL received, no PUBCOMP.
	pubc.send(&packet.Publish{Topic: "q2r/out", QoS: 2, PacketID: 1, Payload: []byte("out")})
	expect[*packet.Ack](pubc) // PUBREC
	pubc.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 1})
	expect[*packet.Ack](pubc) // PUBCOMP
	out := expect[*packet.Publish](sub)
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: out.PacketID})
	if rel := expect[*packet.Ack](sub); rel.Kind != packet.PUBREL {
		t.Fatalf("got %v, want PUBREL", rel.Kind)
	}

	// Inbound half: PUBLISH acknowledged with PUBREC, PUBREL not yet sent.
	pubc.send(&packet.Publish{Topic: "q2r/in", QoS: 2, PacketID: 2, Payload: []byte("in")})
	if rec := expect[*packet.Ack](pubc); rec.Kind != packet.PUBREC || rec.ReasonCode >= 0x80 {
		t.Fatalf("got %v 0x%02x, want PUBREC success", rec.Kind, rec.ReasonCode)
	}
	// The subscriber may already have the inbound message (delivery at
	// PUBLISH time); record whatever reached it before the restart.
	before := map[string]int{}
	recs := 0 // PUBRECs not yet answered by a PUBREL: the broker has not got them yet
	pubc.publishMarker("q2r/marker", 0)
	sub.untilMarker("q2r/marker", func(p packet.Packet) {
		switch p := p.(type) {
		case *packet.Publish:
			before[string(p.Payload)]++
			sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
			recs++
		case *packet.Ack:
			if p.Kind == packet.PUBREL {
				recs--
			}
		}
	})
	for ; recs > 0; recs-- {
		if rel := expect[*packet.Ack](sub); rel.Kind != packet.PUBREL {
			t.Fatalf("got %v, want PUBREL", rel.Kind)
		}
	}
	sub.Close()
	pubc.Close()
	stopBroker(t, srv)

	srv = startBroker(t, durable(dir))
	addr = tcpAddr(t, srv)
	pubc, ca := persistentRaw(t, addr, "q2-pub", false)
	if !ca.SessionPresent {
		t.Fatalf("publisher session lost across restart")
	}
	pubc.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 2})
	if comp := expect[*packet.Ack](pubc); comp.Kind != packet.PUBCOMP || comp.ReasonCode != 0 {
		t.Errorf("PUBREL after restart: got %v reason 0x%02x, want PUBCOMP success", comp.Kind, comp.ReasonCode)
	}

	sub, ca = persistentRaw(t, addr, "q2-sub", false)
	if !ca.SessionPresent {
		t.Fatalf("subscriber session lost across restart")
	}
	after := map[string]int{}
	sawRel := false
	pubc.publishMarker("q2r/marker", 2) // queues behind what the resumed session holds
	sub.untilMarker("q2r/marker", func(p packet.Packet) {
		switch p := p.(type) {
		case *packet.Ack:
			if p.Kind == packet.PUBREL && p.PacketID == out.PacketID {
				sawRel = true
				sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			} else if p.Kind == packet.PUBREL {
				sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			}
		case *packet.Publish:
			after[string(p.Payload)]++
			sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
		}
	})
	if !sawRel {
		t.Errorf("outbound QoS 2: PUBREL not resent after restart")
	}
	if after["out"] > 0 {
		t.Errorf("outbound QoS 2 message PUBLISHed again after PUBREC (%d times)", after["out"])
	}
	// "in" counts once if it arrived before the restart and was PUBREC'd
	// there, or once now; never twice as a new message.
	if n := before["in"] + after["in"]; n != 1 {
		t.Errorf("inbound QoS 2 message delivered %d times across the restart (before %d, after %d), want exactly once", n, before["in"], after["in"])
	}
}

// TestV311PipelinedPublishesThrottledNotDropped proves a 3.1.1 client that
// pipelines many QoS 1 PUBLISHes (it has no Receive Maximum to respect) is
// slowed down, not disconnected: every PUBLISH is PUBACKed in order and
// delivered, with a durable store making acknowledgements lag.
func TestV311PipelinedPublishesThrottledNotDropped(t *testing.T) {
	t.Parallel()
	const n = 2000
	srv := startBroker(t, durable(t.TempDir()), func(c *config.Config) { c.MQTT.ReceiveMaximum = 10 })
	addr := tcpAddr(t, srv)
	s := connectV5(t, addr, v5Connect("s", true, 0))
	s.subscribe(sub("pipe", 1))

	raw := dialRaw(t, addr, packet.V311)
	raw.mustConnect(rawConnect("piper", true))
	var all []byte
	for i := 1; i <= n; i++ {
		b := mustEncodeV(t, &packet.Publish{Topic: "pipe", QoS: 1, PacketID: uint16(i), Payload: []byte(strconv.Itoa(i))}, packet.V311)
		all = append(all, b...)
	}
	go func() { _, _ = raw.Write(all) }() // the broker may stop reading while it catches up
	for i := 1; i <= n; i++ {
		p, _, err := raw.readPacket(30 * time.Second)
		if err != nil {
			t.Fatalf("after %d PUBACKs: %v", i-1, err)
		}
		ack, ok := p.(*packet.Ack)
		if !ok || ack.Kind != packet.PUBACK || ack.PacketID != uint16(i) {
			t.Fatalf("PUBACK %d: got %v %+v", i, p.Type(), p)
		}
	}
	got := recvN(t, s.msgs, n, 30*time.Second)
	for i, m := range got {
		if string(m.Payload) != strconv.Itoa(i+1) {
			t.Fatalf("delivery %d: %q", i, m.Payload)
		}
	}
}

func mustEncodeV(t *testing.T, p packet.Packet, v packet.Version) []byte {
	t.Helper()
	b, err := p.Encode(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSessionDetailsSurviveRestart proves a graceful restart on the same
// data dir keeps each subscription's options (Subscription Identifier, No
// Local, Retain As Published, shared group), keeps the remaining interval
// of a queued message's expiry, and still expires a short session.
func TestSessionDetailsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := startBroker(t, durable(dir))
	addr := tcpAddr(t, srv)

	c, _ := persistentRaw(t, addr, "keeper", true)
	opts := rawSub("opt/#", 1)
	opts.NoLocal, opts.RetainAsPublished = true, true
	c.subscribe(1, subID(9), opts)
	c.subscribe(2, subID(0), rawSub("$share/grp/opt/shared", 1))
	c.Close()
	short := connectV5(t, addr, v5Connect("short", false, 1))
	short.disconnect(0, nil)
	waitClients(t, srv, 0)

	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("opt/queued", 1, "expires later", withProps(&paho.PublishProperties{MessageExpiry: paho.Uint32(100)}))
	p.disconnect(0, nil)
	stopBroker(t, srv)

	srv = startBroker(t, durable(dir))
	addr = tcpAddr(t, srv)
	restarted := time.Now()
	c, ca := persistentRaw(t, addr, "keeper", false)
	if !ca.SessionPresent {
		t.Fatalf("session lost across restart")
	}
	q := expect[*packet.Publish](c)
	if q.Topic != "opt/queued" || !slices.Equal(q.Props.SubscriptionIDs, []uint32{9}) {
		t.Errorf("queued message after restart: %s ids %v, want opt/queued ids [9]", q.Topic, q.Props.SubscriptionIDs)
	}
	if !q.Props.Has(packet.PropMessageExpiry) || q.Props.MessageExpiry == 0 || q.Props.MessageExpiry > 100 {
		t.Errorf("queued message expiry after restart: %d (present %v), want 1..100", q.Props.MessageExpiry, q.Props.Has(packet.PropMessageExpiry))
	}
	c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: q.PacketID})

	// No Local still applies: our own message on opt/self must not come back.
	c.send(&packet.Publish{Topic: "opt/self", QoS: 0, Payload: []byte("mine")})
	p = connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("opt/live", 1, "r", retained)
	p.publish("opt/shared", 1, "to the group")
	got := map[string]*packet.Publish{}
	for len(got) < 2 {
		pb := expect[*packet.Publish](c)
		if pb.Topic == "opt/self" {
			t.Errorf("No Local lost across restart: own message delivered")
		}
		got[pb.Topic] = pb
		if pb.QoS > 0 {
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pb.PacketID})
		}
	}
	if live := got["opt/live"]; live == nil || !live.Retain || !slices.Equal(live.Props.SubscriptionIDs, []uint32{9}) {
		t.Errorf("live message after restart: %+v, want RETAIN kept (retain as published) and ids [9]", live)
	}
	if got["opt/shared"] == nil {
		t.Errorf("shared subscription lost across restart")
	}

	waitFor(t, 5*time.Second, "the 1 s session to expire", func() bool { return time.Since(restarted) > 1500*time.Millisecond })
	if s := connectV5(t, addr, v5Connect("short", false, 1)); s.connack.SessionPresent {
		t.Errorf("a session with a 1 s expiry is still present 1.5 s after the restart")
	}
}
