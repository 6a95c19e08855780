package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTime bounds every wait of the tests; quietTime is how long a test
// listens to assert that nothing arrives.
const (
	waitTime  = 5 * time.Second
	quietTime = 150 * time.Millisecond
)

// testConfig is the default MQTT config with short timeouts.
func testConfig() config.MQTT {
	cfg := config.Default().MQTT
	cfg.ConnectTimeout = 2 * time.Second
	cfg.WriteTimeout = 2 * time.Second
	cfg.MaxTopicAlias = 10
	return cfg
}

// testBroker is a started broker served on a loopback listener.
type testBroker struct {
	*Broker
	t    testing.TB
	ln   net.Listener
	done chan struct{}
	once sync.Once
}

// startBroker starts a broker with opts (Config from testConfig when zero)
// and stops it at the end of the test.
func startBroker(t testing.TB, opts Options) *testBroker {
	t.Helper()
	if opts.Config.MaxQoS == 0 && opts.Config.MaxPacketSize == 0 {
		opts.Config = testConfig()
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBroker{Broker: b, t: t, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(tb.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.Handle(c, listener.ConnInfo{Listener: "tcp://test", Scheme: "tcp", Remote: c.RemoteAddr(), Local: c.LocalAddr()})
		}
	}()
	t.Cleanup(tb.stop)
	return tb
}

// stop shuts the broker down and checks it went cleanly.
func (tb *testBroker) stop() {
	tb.once.Do(func() {
		tb.ln.Close()
		<-tb.done
		ctx, cancel := context.WithTimeout(context.Background(), waitTime)
		defer cancel()
		if err := tb.Shutdown(ctx); err != nil {
			tb.t.Errorf("shutdown: %v", err)
		}
	})
}

// client is a raw MQTT test client built on the codec.
type client struct {
	t  testing.TB
	nc net.Conn
	v  packet.Version
}

func (tb *testBroker) dial(v packet.Version) *client {
	tb.t.Helper()
	nc, err := net.Dial("tcp", tb.ln.Addr().String())
	if err != nil {
		tb.t.Fatal(err)
	}
	c := &client{t: tb.t, nc: nc, v: v}
	tb.t.Cleanup(func() { nc.Close() })
	return c
}

// connect dials and connects with clean start, expecting success.
func (tb *testBroker) connect(id string, v packet.Version, opt ...func(*packet.Connect)) *client {
	tb.t.Helper()
	c := tb.dial(v)
	ack := c.connect(id, opt...)
	if ack.ReasonCode != 0 {
		tb.t.Fatalf("connect %q: reason 0x%02x", id, ack.ReasonCode)
	}
	return c
}

func (c *client) connect(id string, opt ...func(*packet.Connect)) *packet.Connack {
	c.t.Helper()
	p := &packet.Connect{Version: c.v, CleanStart: true, KeepAlive: 60, ClientID: id}
	for _, o := range opt {
		o(p)
	}
	c.send(p)
	return c.expect(packet.CONNACK).(*packet.Connack)
}

func (c *client) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Encode(nil, c.v)
	if err != nil {
		c.t.Fatalf("encode %v: %v", p.Type(), err)
	}
	c.write(b)
}

func (c *client) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(waitTime))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads the next packet within d.
func (c *client) read(d time.Duration) (packet.Packet, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	return packet.ReadPacket(c.nc, c.v, 0)
}

// expect reads the next packet and fails unless it is of type typ.
func (c *client) expect(typ packet.Type) packet.Packet {
	c.t.Helper()
	p, err := c.read(waitTime)
	if err != nil {
		c.t.Fatalf("want %v: %v", typ, err)
	}
	if p.Type() != typ {
		c.t.Fatalf("want %v, got %v %+v", typ, p.Type(), p)
	}
	return p
}

func (c *client) expectPublish(topic string, payload string) *packet.Publish {
	c.t.Helper()
	p := c.expect(packet.PUBLISH).(*packet.Publish)
	if p.Topic != topic || string(p.Payload) != payload {
		c.t.Fatalf("want PUBLISH %s %q, got %s %q", topic, payload, p.Topic, p.Payload)
	}
	return p
}

// expectNone fails if a packet arrives within quietTime.
func (c *client) expectNone() {
	c.t.Helper()
	p, err := c.read(quietTime)
	if err == nil {
		c.t.Fatalf("want nothing, got %v %+v", p.Type(), p)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("want nothing, got error %v", err)
	}
}

// expectClosed fails unless the broker closes the connection (any packets
// before the close are skipped and returned).
func (c *client) expectClosed() []packet.Packet {
	c.t.Helper()
	var got []packet.Packet
	for {
		p, err := c.read(waitTime)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("want close, connection still open (got %v)", got)
			}
			return got
		}
		got = append(got, p)
	}
}

// expectDisconnect fails unless the broker sends exactly one DISCONNECT,
// with reason code code, and closes the connection.
func (c *client) expectDisconnect(code byte) {
	c.t.Helper()
	got := c.expectClosed()
	if len(got) != 1 || got[0].Type() != packet.DISCONNECT || got[0].(*packet.Disconnect).ReasonCode != code {
		c.t.Fatalf("want DISCONNECT 0x%02x and close, got %v", code, got)
	}
}

func (c *client) subscribe(pid uint16, filter string, qos byte) *packet.Suback {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: pid, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}})
	return c.expect(packet.SUBACK).(*packet.Suback)
}

func (c *client) publish(topic, payload string, qos byte, retain bool, pid uint16) {
	c.t.Helper()
	c.send(&packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: pid})
}

func (c *client) close() { c.nc.Close() }

// eventually polls cond until it holds or waitTime passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// matchPacket compares the fields of got that the test cares about.
func matchPacket(want, got packet.Packet) bool {
	if want.Type() != got.Type() {
		return false
	}
	switch w := want.(type) {
	case *packet.Connack:
		g := got.(*packet.Connack)
		return w.SessionPresent == g.SessionPresent && w.ReasonCode == g.ReasonCode
	case *packet.Publish:
		g := got.(*packet.Publish)
		ok := w.Topic == g.Topic && bytes.Equal(w.Payload, g.Payload) && w.QoS == g.QoS && w.Retain == g.Retain && w.Dup == g.Dup
		if w.PacketID != 0 {
			ok = ok && w.PacketID == g.PacketID
		}
		if w.Props.SubscriptionIDs != nil {
			ok = ok && equalIDs(w.Props.SubscriptionIDs, g.Props.SubscriptionIDs)
		}
		return ok
	case *packet.Ack:
		g := got.(*packet.Ack)
		return w.Kind == g.Kind && w.PacketID == g.PacketID && w.ReasonCode == g.ReasonCode
	case *packet.Suback:
		g := got.(*packet.Suback)
		return w.PacketID == g.PacketID && bytes.Equal(w.ReasonCodes, g.ReasonCodes)
	case *packet.Unsuback:
		g := got.(*packet.Unsuback)
		return w.PacketID == g.PacketID && bytes.Equal(w.ReasonCodes, g.ReasonCodes)
	case *packet.Disconnect:
		return w.ReasonCode == got.(*packet.Disconnect).ReasonCode
	case *packet.Auth:
		return w.ReasonCode == got.(*packet.Auth).ReasonCode
	}
	return true
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[uint32]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// memStore is a shared Memory store closed at the end of the test.
func memStore(t testing.TB) store.Store {
	s := store.NewMemory()
	t.Cleanup(func() { s.Close() })
	return s
}

var _ io.Reader = (net.Conn)(nil)
