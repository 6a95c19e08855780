package cluster_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// raw is an MQTT client on the codec, for what libraries hide: packet ids,
// DUP, when to acknowledge.
type raw struct {
	t  *testing.T
	nc net.Conn
	v  packet.Version
	// wait bounds collect's wait for each packet (default waitTimeout).
	wait time.Duration
}

// dialRaw connects id to addr with clean start 0 and, for v5, a session
// expiry of 300 s and Receive Maximum recvMax; it returns the CONNACK
// (refused or not) and the client, nil if the connection failed.
func dialRaw(t *testing.T, addr, id string, v packet.Version, recvMax uint16) (*raw, *packet.Connack) {
	t.Helper()
	return dialRawExpiry(t, addr, id, v, recvMax, 300)
}

// dialRawExpiry is dialRaw with a v5 session expiry of expiry seconds.
func dialRawExpiry(t *testing.T, addr, id string, v packet.Version, recvMax uint16, expiry uint32) (*raw, *packet.Connack) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil
	}
	c := &raw{t: t, nc: nc, v: v, wait: waitTimeout}
	t.Cleanup(func() { nc.Close() })
	p := &packet.Connect{Version: v, ClientID: id, KeepAlive: 60}
	if v == packet.V5 {
		p.Props.SessionExpiry = expiry
		p.Props.Set(packet.PropSessionExpiry)
		p.Props.ReceiveMaximum = recvMax
		p.Props.Set(packet.PropReceiveMaximum)
	}
	c.send(p)
	pk, err := c.read(waitTimeout)
	if err != nil {
		nc.Close()
		return nil, nil
	}
	ack, ok := pk.(*packet.Connack)
	if !ok {
		t.Fatalf("%s: want CONNACK, got %v", id, pk.Type())
	}
	return c, ack
}

// resumeRaw connects id to addr until the node accepts it (a cluster
// electing leaders after a node died answers 0x88 meanwhile) and checks
// that its session is present.
func resumeRaw(t *testing.T, addr, id string, recvMax uint16) *raw {
	t.Helper()
	var c *raw
	eventually(t, id+" to resume on "+addr, func() bool {
		var ack *packet.Connack
		c, ack = dialRaw(t, addr, id, packet.V5, recvMax)
		if c == nil || ack.ReasonCode != 0 {
			return false
		}
		if !ack.SessionPresent {
			t.Fatalf("%s: CONNACK without session present", id)
		}
		return true
	})
	return c
}

func (c *raw) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Encode(nil, c.v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *raw) read(d time.Duration) (packet.Packet, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	return packet.ReadPacket(c.nc, c.v, 0)
}

func (c *raw) expect(typ packet.Type) packet.Packet {
	c.t.Helper()
	p, err := c.read(waitTimeout)
	if err != nil {
		c.t.Fatalf("want %v: %v", typ, err)
	}
	if p.Type() != typ {
		c.t.Fatalf("want %v, got %v %+v", typ, p.Type(), p)
	}
	return p
}

// subscribe sends SUBSCRIBE and returns the SUBACK's first code; the
// PUBLISHes that come first are returned too.
func (c *raw) subscribe(pid uint16, filter string, qos byte) (byte, []*packet.Publish) {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: pid, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}})
	var before []*packet.Publish
	for {
		p, err := c.read(waitTimeout)
		if err != nil {
			c.t.Fatalf("want SUBACK: %v", err)
		}
		switch p := p.(type) {
		case *packet.Suback:
			return p.ReasonCodes[0], before
		case *packet.Publish:
			before = append(before, p)
		default:
			c.t.Fatalf("want SUBACK, got %v", p.Type())
		}
	}
}

// ack acknowledges p: PUBACK, or PUBREC (PUBCOMP follows the PUBREL,
// in collect).
func (c *raw) ack(p *packet.Publish) {
	c.t.Helper()
	switch p.QoS {
	case 1:
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	case 2:
		c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	}
}

// collect reads until n PUBLISHes came, acknowledging each and answering
// PUBRELs with PUBCOMP, and returns them in the order they came.
func (c *raw) collect(n int) []*packet.Publish {
	c.t.Helper()
	var got []*packet.Publish
	for len(got) < n {
		p, err := c.read(c.wait)
		if err != nil {
			var pl []string
			for _, p := range got {
				pl = append(pl, fmt.Sprintf("%s(dup %v, id %d)", p.Payload, p.Dup, p.PacketID))
			}
			c.t.Fatalf("after %d of %d PUBLISHes %v: %v", len(got), n, pl, err)
		}
		switch p := p.(type) {
		case *packet.Publish:
			got = append(got, p)
			c.ack(p)
		case *packet.Ack:
			if p.Kind != packet.PUBREL {
				c.t.Fatalf("unexpected %v", p.Kind)
			}
			c.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
		default:
			c.t.Fatalf("unexpected %v", p.Type())
		}
	}
	return got
}

// publishOK publishes with pub until the cluster acknowledges it (a
// publish refused while leaders are elected is sent again). It returns
// the payloads sent: payload, then payload.1, .2... for the attempts
// after a refusal, each of which may or may not have been stored.
func publishOK(t *testing.T, pub *v5, topic string, qos byte, payload string) []string {
	t.Helper()
	var sent []string
	eventually(t, "publish of "+payload, func() bool {
		pl := payload
		if n := len(sent); n > 0 {
			pl = fmt.Sprintf("%s.%d", payload, n)
		}
		sent = append(sent, pl)
		r, err := pub.pub(topic, qos, pl)
		if err != nil || r != nil && r.ReasonCode >= 0x80 {
			t.Logf("publish %s refused (sent again): %v %+v", pl, err, r)
			return false
		}
		return true
	})
	return sent
}

// mosquittoResume runs mosquitto_sub -c -q 1 as id on addr until it has
// printed n messages, and returns their payloads.
func mosquittoResume(t *testing.T, addr, id, filter string, n int) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_sub", "-h", host, "-p", port, "-c", "-q", "1", "-i", id,
		"-t", filter, "-C", fmt.Sprint(n), "-W", fmt.Sprint(int(waitTimeout/time.Second))).Output()
	if err != nil {
		t.Fatalf("mosquitto_sub -c: %v (%s)", err, out)
	}
	return strings.Fields(string(out))
}

// TestPersistentSessionMoves: persistent sessions live in the cluster.
// Sessions on node a (a raw v5 client with QoS 1 and 2 messages in
// flight and queued, paho.golang v5, paho.mqtt.golang 3.1.1 and
// mosquitto_sub -c, offline with queued messages) resume on other nodes
// after a is SIGKILLed: session present, in-flight messages again with DUP
// and their packet ids, queued ones in order, nothing missing, no QoS 2
// duplicate. A takeover while the old node lives moves the session too.
// The last core left alone refuses new persistent-session state.
func TestPersistentSessionMoves(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3})
	a, b, cc := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	for _, n := range c.Nodes {
		eventually(t, "node "+n.Name+" to keep persistent sessions", func() bool {
			r, ack := dialRaw(t, n.MQTT(), "probe-"+n.Name, packet.V5, 10)
			if r == nil {
				return false
			}
			r.nc.Close()
			return ack.ReasonCode == 0
		})
	}
	pub := dialV5(t, b.MQTT(), "pub")

	// The sessions on a, their subscriptions known cluster-wide.
	s, ack := dialRaw(t, a.MQTT(), "raw", packet.V5, 2)
	if s == nil || ack.ReasonCode != 0 || ack.SessionPresent {
		t.Fatalf("raw: CONNACK %+v", ack)
	}
	if rc, _ := s.subscribe(1, "t/raw/#", 2); rc != 2 {
		t.Fatalf("raw: SUBACK 0x%02x", rc)
	}
	p5 := dialV5Session(t, a.MQTT(), "p5", false)
	p5.sub("t/p5", 1, 0, false)
	p3 := dialV3Session(t, a.MQTT(), "p3")
	p3.sub(t, "t/p3", 1)
	mq := mosquittoSubSession(t, a.MQTT(), "mq", "t/mq")
	eventually(t, "the subscriptions on a known on b", func() bool {
		publishOK(t, pub, "t/raw/prime", 1, "prime")
		publishOK(t, pub, "t/p5", 1, "prime")
		publishOK(t, pub, "t/p3", 1, "prime")
		publishOK(t, pub, "t/mq", 1, "prime")
		return gotPrime(t, s) && drained(p5.msgs) && drained(p3.msgs) && drained(mq.lines)
	})
	p5.Disconnect(&paho.Disconnect{})
	p3.Disconnect(250)
	mq.stop()

	// Queued for each; raw has two in flight (its window) and three queued.
	sent := []struct {
		payload string
		qos     byte
	}{{"m1", 1}, {"m2", 2}, {"m3", 1}, {"m4", 2}, {"m5", 1}}
	for _, m := range sent {
		publishOK(t, pub, "t/raw/x", m.qos, m.payload)
	}
	for _, id := range []string{"p5", "p3", "mq"} {
		for i := 1; i <= 3; i++ {
			publishOK(t, pub, "t/"+id, 1, fmt.Sprintf("%s-%d", id, i))
		}
	}
	pids := map[string]uint16{}
	for _, want := range sent[:2] {
		p := s.expect(packet.PUBLISH).(*packet.Publish)
		if string(p.Payload) != want.payload {
			t.Fatalf("raw: got %q, want %q", p.Payload, want.payload)
		}
		pids[want.payload] = p.PacketID
	}
	// SUBACK comes after the Save that has the window's packet ids.
	if rc, _ := s.subscribe(2, "t/raw-marker", 1); rc != 1 {
		t.Fatalf("raw: SUBACK 0x%02x", rc)
	}
	a.Kill()

	s = resumeRaw(t, cc.MQTT(), "raw", 10)
	// What comes after the resume comes through the node's reader of the
	// log, which waits for a new consumer when the core that held its
	// consumer died (nats.go's ordered consumer: a few seconds, up to
	// tens under load).
	s.wait = 3 * waitTimeout
	m6 := publishOK(t, pub, "t/raw/x", 2, "m6")
	got := s.collect(5 + len(m6))
	for i, want := range sent[:2] {
		p := got[i]
		if string(p.Payload) != want.payload || !p.Dup || p.PacketID != pids[want.payload] || p.QoS != want.qos {
			t.Fatalf("raw in flight: got %q dup %v id %d QoS %d, want %q with DUP, id %d, QoS %d",
				p.Payload, p.Dup, p.PacketID, p.QoS, want.payload, pids[want.payload], want.qos)
		}
	}
	for i, want := range append([]string{"m3", "m4", "m5"}, m6...) {
		if p := got[2+i]; string(p.Payload) != want || p.Dup {
			t.Fatalf("raw: got %q dup %v, want %q", p.Payload, p.Dup, want)
		}
	}
	// Nothing more, none twice: the next message is the marker.
	publishOK(t, pub, "t/raw/x", 1, "end")
	if p := s.collect(1)[0]; string(p.Payload) != "end" {
		t.Fatalf("raw: got %q after everything, want the marker", p.Payload)
	}

	// Published while the sessions' node is dead: only the log has them.
	p5late := publishOK(t, pub, "t/p5", 1, "p5-4")
	p3late := publishOK(t, pub, "t/p3", 1, "p3-4")
	var p5b *v5
	eventually(t, "p5 to resume on b", func() bool {
		var present bool
		p5b, present = tryV5Session(t, b.MQTT(), "p5")
		if p5b != nil && !present {
			t.Fatal("p5: CONNACK without session present")
		}
		return p5b != nil
	})
	expectPayloads(t, "p5", p5b.msgs, []string{"p5-1", "p5-2", "p5-3"}, p5late)
	p3b := dialV3Session(t, b.MQTT(), "p3")
	if !p3b.present {
		t.Fatal("p3: CONNACK without session present")
	}
	expectPayloads(t, "p3", p3b.msgs, []string{"p3-1", "p3-2", "p3-3"}, p3late)
	if got := mosquittoResume(t, b.MQTT(), "mq", "t/mq", 3); strings.Join(got, " ") != "mq-1 mq-2 mq-3" {
		t.Fatalf("mosquitto_sub -c got %v, want mq-1 mq-2 mq-3", got)
	}

	t.Run("takeover", func(t *testing.T) {
		old, ack := dialRaw(t, b.MQTT(), "tk", packet.V5, 1)
		if old == nil || ack.ReasonCode != 0 {
			t.Fatalf("tk: CONNACK %+v", ack)
		}
		old.subscribe(1, "t/tk", 1)
		for _, pl := range []string{"a", "b", "c"} {
			publishOK(t, pub, "t/tk", 1, pl)
		}
		first := old.expect(packet.PUBLISH).(*packet.Publish)
		s := resumeRaw(t, cc.MQTT(), "tk", 10)
		if d := old.expect(packet.DISCONNECT).(*packet.Disconnect); d.ReasonCode != packet.ErrSessionTakenOver.Value {
			t.Fatalf("old connection: DISCONNECT 0x%02x, want 0x8E", d.ReasonCode)
		}
		got := s.collect(3)
		if p := got[0]; string(p.Payload) != "a" || !p.Dup || p.PacketID != first.PacketID {
			t.Fatalf("got %q dup %v id %d, want a with DUP and id %d", p.Payload, p.Dup, p.PacketID, first.PacketID)
		}
		if string(got[1].Payload) != "b" || string(got[2].Payload) != "c" {
			t.Fatalf("got %q %q, want b c", got[1].Payload, got[2].Payload)
		}
	})

	// A clean start discards an offline session that no node holds any
	// more (its node was killed and restarted): the record is deleted
	// because the node's index knows there is one, so a later clean start
	// 0 finds no session and none of what was queued.
	t.Run("clean start discards", func(t *testing.T) {
		old, ack := dialRaw(t, b.MQTT(), "cs", packet.V5, 10)
		if old == nil || ack.ReasonCode != 0 {
			t.Fatalf("cs: CONNACK %+v", ack)
		}
		if rc, _ := old.subscribe(1, "t/cs", 1); rc != 1 {
			t.Fatalf("cs: SUBACK 0x%02x", rc)
		}
		old.send(&packet.Disconnect{})
		old.nc.Close()
		publishOK(t, pub, "t/cs", 1, "queued")
		b.Kill()
		b.Restart()
		b.WaitReady()
		var clean *raw
		eventually(t, "cs to connect with clean start on "+cc.Name, func() bool {
			nc, err := net.DialTimeout("tcp", cc.MQTT(), 5*time.Second)
			if err != nil {
				return false
			}
			clean = &raw{t: t, nc: nc, v: packet.V5, wait: waitTimeout}
			t.Cleanup(func() { nc.Close() })
			clean.send(&packet.Connect{Version: packet.V5, ClientID: "cs", KeepAlive: 60, CleanStart: true})
			ack, ok := clean.expect(packet.CONNACK).(*packet.Connack)
			if ok && ack.ReasonCode == 0 && ack.SessionPresent {
				t.Fatal("cs: clean start with session present")
			}
			return ok && ack.ReasonCode == 0
		})
		clean.send(&packet.Disconnect{})
		clean.nc.Close()
		s, ack := dialRaw(t, b.MQTT(), "cs", packet.V5, 10)
		if s == nil || ack.ReasonCode != 0 || ack.SessionPresent {
			t.Fatalf("cs after a clean start elsewhere: CONNACK %+v, want no session", ack)
		}
		if rc, _ := s.subscribe(2, "t/cs-end", 1); rc != 1 {
			t.Fatalf("cs: SUBACK 0x%02x", rc)
		}
		pub := dialV5(t, cc.MQTT(), "pub-cs") // pub's node was restarted
		publishOK(t, pub, "t/cs-end", 1, "end")
		if p := s.collect(1)[0]; string(p.Payload) != "end" {
			t.Fatalf("cs: got %q, want only the marker (the discarded session's message came back)", p.Payload)
		}
	})

	t.Run("minority", func(t *testing.T) {
		s, ack := dialRaw(t, cc.MQTT(), "lone", packet.V5, 10)
		if s == nil || ack.ReasonCode != 0 {
			t.Fatalf("lone: CONNACK %+v", ack)
		}
		b.Kill() // cc is the last core of three: no majority
		if rc, _ := s.subscribe(1, "t/lone", 1); rc != packet.ErrUnspecified.Value {
			t.Fatalf("SUBACK 0x%02x on a minority, want 0x80", rc)
		}
		// raw's session subscribes to t/raw/#: the log cannot take it.
		s.send(&packet.Publish{Topic: "t/raw/x", Payload: []byte("no"), QoS: 1, PacketID: 5})
		if a := s.expect(packet.PUBACK).(*packet.Ack); a.ReasonCode != packet.ErrUnspecified.Value {
			t.Fatalf("PUBACK 0x%02x on a minority, want 0x80", a.ReasonCode)
		}
		if _, ack := dialRaw(t, cc.MQTT(), "lone-new", packet.V5, 10); ack == nil || ack.ReasonCode != packet.ErrServerUnavailable.Value {
			t.Fatalf("CONNACK %+v on a minority, want 0x88", ack)
		}
		if _, ack := dialRaw(t, cc.MQTT(), "lone-v3", packet.V311, 0); ack == nil || ack.ReasonCode != 3 {
			t.Fatalf("3.1.1 CONNACK %+v on a minority, want 3", ack)
		}
	})
}

// gotPrime reads raw's PUBLISHes until a prime, acknowledging them.
func gotPrime(t *testing.T, s *raw) bool {
	t.Helper()
	for {
		p, err := s.read(200 * time.Millisecond)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if pp, ok := p.(*packet.Publish); ok {
			s.ack(pp)
			if string(pp.Payload) == "prime" {
				// Drain what else came (earlier primes).
				for {
					p, err := s.read(200 * time.Millisecond)
					if err != nil {
						return true
					}
					if pp, ok := p.(*packet.Publish); ok {
						s.ack(pp)
					}
				}
			}
		}
	}
}

// drained empties ch and reports whether it held a prime.
func drained(ch chan msg) bool {
	got := false
	for {
		select {
		case m := <-ch:
			got = got || m.Payload == "prime"
		case <-time.After(200 * time.Millisecond):
			return got
		}
	}
}

// expectPayloads reads messages from ch, skipping primes, until the last
// of late (publishOK's attempts) came, and checks that they are want then
// late in order; the attempts of late that were refused may be missing.
func expectPayloads(t *testing.T, who string, ch chan msg, want, late []string) {
	t.Helper()
	last := late[len(late)-1]
	var got []string
	timer := time.NewTimer(3 * waitTimeout) // after a core died: see s.wait above
	defer timer.Stop()
	for len(got) == 0 || got[len(got)-1] != last {
		select {
		case m := <-ch:
			if m.Payload != "prime" {
				got = append(got, m.Payload)
			}
		case <-timer.C:
			t.Fatalf("%s: got %v, want %v then %v", who, got, want, late)
		}
	}
	rest, ok := strings.CutPrefix(strings.Join(got, " "), strings.Join(want, " "))
	for _, x := range strings.Fields(rest) {
		ok = ok && len(late) > 0
		for len(late) > 0 && late[0] != x {
			late = late[1:] // a refused attempt that was not stored
		}
		if len(late) > 0 {
			late = late[1:]
		}
	}
	if !ok {
		t.Fatalf("%s: got %v, want %v then %v", who, got, want, late)
	}
}

// dialV5Session connects a paho.golang client with clean start 0 and a
// session expiry, failing the test unless accepted with session present
// as want.
func dialV5Session(t *testing.T, addr, id string, present bool) *v5 {
	t.Helper()
	c, got := tryV5Session(t, addr, id)
	if c == nil {
		t.Fatalf("%s: not accepted by %s", id, addr)
	}
	if got != present {
		t.Fatalf("%s: session present %v, want %v", id, got, present)
	}
	return c
}

// tryV5Session is dialV5Session's attempt: nil when refused.
func tryV5Session(t *testing.T, addr, id string) (*v5, bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, false
	}
	c := &v5{t: t, msgs: make(chan msg, 1000)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: conn, PacketTimeout: waitTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			c.msgs <- msg{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	exp := uint32(300)
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: false, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
	if err != nil || ack.ReasonCode != 0 {
		conn.Close()
		return nil, false
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}); conn.Close() })
	return c, ack.SessionPresent
}

// v3s is a paho.mqtt.golang 3.1.1 client with clean session 0.
type v3s struct {
	*v3
	present bool
}

func dialV3Session(t *testing.T, addr, id string) *v3s {
	t.Helper()
	c := &v3s{v3: &v3{msgs: make(chan msg, 1000)}}
	eventually(t, id+" (3.1.1) to connect to "+addr, func() bool {
		opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
			SetCleanSession(false).SetAutoReconnect(false).SetOrderMatters(true).SetConnectTimeout(5 * time.Second).
			SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
				c.msgs <- msg{Topic: m.Topic(), Payload: string(m.Payload()), QoS: m.Qos()}
			})
		c.Client = mqtt.NewClient(opts)
		tok := c.Connect()
		if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
			return false
		}
		c.present = tok.(*mqtt.ConnectToken).SessionPresent()
		return true
	})
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// mosqSession is a mosquitto_sub -c process.
type mosqSession struct {
	cmd   *exec.Cmd
	lines chan msg
}

// mosquittoSubSession runs mosquitto_sub -c -q 1 as id on addr.
func mosquittoSubSession(t *testing.T, addr, id, filter string) *mosqSession {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("stdbuf", "-oL", "mosquitto_sub", "-h", host, "-p", port, "-c", "-q", "1", "-i", id, "-t", filter)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (apt install mosquitto-clients)", err)
	}
	m := &mosqSession{cmd: cmd, lines: make(chan msg, 1000)}
	t.Cleanup(m.stop)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.lines <- msg{Payload: sc.Text()}
		}
	}()
	return m
}

// stop ends mosquitto_sub as Ctrl-C does: it disconnects, the session
// stays.
func (m *mosqSession) stop() {
	if m.cmd.ProcessState == nil {
		m.cmd.Process.Signal(os.Interrupt)
		m.cmd.Wait()
	}
}
