package broker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
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
// session resumes with its subscriptions, queued and in-flight messages, and
// retained messages survive.
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
// is still known after it, so the retransmitted PUBLISH is not routed twice.
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
	s.expectNone()
}

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
	s.expectNone()
	w2 := tb.dial(packet.V5)
	w2.connect("w", persistent(60))
	// Reconnected within the delay: the will is never sent.
	s.nc.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	if p, err := packetRead(s); err == nil {
		t.Fatalf("will sent after reconnect: %+v", p)
	}
	w2.close()
	w3 := tb.connect("w3", packet.V5, delayed)
	w3.close()
	start := time.Now()
	s.expectPublish("will", "late")
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("will sent after %v, before its delay", d)
	}
}

func packetRead(c *client) (packet.Packet, error) { return packet.ReadPacket(c.nc, c.v, 0) }

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
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != 0x8D {
		t.Fatalf("got %v", got)
	}
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

// holdInterceptor holds every message until released.
type holdInterceptor struct {
	mu    sync.Mutex
	held  []func(error)
	msgs  []string
	added chan struct{}
}

func (h *holdInterceptor) Intercept(_ context.Context, _ *ClientInfo, m *Message, done func(error)) {
	h.mu.Lock()
	h.held = append(h.held, done)
	h.msgs = append(h.msgs, string(m.Payload))
	h.mu.Unlock()
	h.added <- struct{}{}
}

func (h *holdInterceptor) release(i int, err error) {
	h.mu.Lock()
	f := h.held[i]
	h.mu.Unlock()
	f(err)
}

var _ Interceptor = (*holdInterceptor)(nil)

// TestInterceptorHoldAndOrder: acks wait for the interceptor and go out in
// receive order even when confirmations complete out of order [MQTT-4.6.0-2..4].
func TestInterceptorHoldAndOrder(t *testing.T) {
	h := &holdInterceptor{added: make(chan struct{}, 16)}
	tb := startBroker(t, Options{AllowAnonymous: true, Interceptors: []Interceptor{h}})
	s := tb.connect("s", packet.V5)
	s.subscribe(1, "t", 1)
	p := tb.connect("p", packet.V5)
	for i := uint16(1); i <= 3; i++ {
		p.publish("t", string(rune('0'+i)), 1, false, i)
		<-h.added
	}
	p.expectNone()
	h.release(2, nil)
	h.release(1, nil)
	p.expectNone() // the first is still held
	h.release(0, nil)
	for i := uint16(1); i <= 3; i++ {
		if a := p.expect(packet.PUBACK).(*packet.Ack); a.PacketID != i {
			t.Fatalf("ack %d out of order: %d", i, a.PacketID)
		}
	}
	for i := 1; i <= 3; i++ {
		m := s.expectPublish("t", string(rune('0'+i)))
		s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
}

// TestInterceptorFail: a v5 client gets the failure code; a 3.1.1 client
// gets no ack; neither message is routed.
func TestInterceptorFail(t *testing.T) {
	h := &holdInterceptor{added: make(chan struct{}, 16)}
	tb := startBroker(t, Options{AllowAnonymous: true, Interceptors: []Interceptor{h}})
	s := tb.connect("s", packet.V5)
	s.subscribe(1, "t", 1)
	p5 := tb.connect("p5", packet.V5)
	p5.publish("t", "x", 1, false, 1)
	<-h.added
	h.release(0, packet.ErrQuotaExceeded)
	if a := p5.expect(packet.PUBACK).(*packet.Ack); a.ReasonCode != 0x97 {
		t.Fatalf("reason 0x%02x", a.ReasonCode)
	}
	p3 := tb.connect("p3", packet.V311)
	p3.publish("t", "y", 2, false, 1)
	<-h.added
	h.release(1, errors.New("kafka down"))
	p3.expectNone()
	s.expectNone()
	// The retransmission goes through once the interceptor accepts it.
	p3.send(&packet.Publish{Topic: "t", Payload: []byte("y"), QoS: 2, PacketID: 1, Dup: true})
	<-h.added
	h.release(2, nil)
	p3.expect(packet.PUBREC)
	s.expectPublish("t", "y")
	if n := tb.Stats().Drops["intercepted"]; n != 2 {
		t.Fatalf("intercepted drops %d", n)
	}
}

// TestReceiveMaximumWithInterceptor [MQTT-3.3.4-9]: a client that sends more
// unacknowledged QoS 1 than our Receive Maximum is disconnected with 0x93.
func TestReceiveMaximumWithInterceptor(t *testing.T) {
	h := &holdInterceptor{added: make(chan struct{}, 16)}
	cfg := testConfig()
	cfg.ReceiveMaximum = 2
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true, Interceptors: []Interceptor{h}})
	p := tb.connect("p", packet.V5)
	p.publish("t", "1", 1, false, 1)
	p.publish("t", "2", 1, false, 2)
	p.publish("t", "3", 1, false, 3)
	got := p.expectClosed()
	if len(got) == 0 || got[len(got)-1].(*packet.Disconnect).ReasonCode != 0x93 {
		t.Fatalf("got %v", got)
	}
	for i := 0; i < 2; i++ {
		<-h.added
		h.release(i, nil)
	}
}

type denyAuth struct{}

func (denyAuth) Authenticate(_ context.Context, c *ClientInfo, p *packet.Connect) error {
	if string(p.Password) != "secret" {
		return packet.ErrBadUsernameOrPassword
	}
	return nil
}

type denyTopics struct{}

func (denyTopics) CanPublish(_ *ClientInfo, topic string, _ byte, _ bool) error {
	if topic == "forbidden" {
		return packet.ErrNotAuthorized
	}
	return nil
}

func (denyTopics) CanSubscribe(_ *ClientInfo, filter string, _ byte) error {
	if filter == "forbidden/#" {
		return errors.New("no")
	}
	return nil
}

func (denyTopics) CanReceive(c *ClientInfo, m *Message) error {
	if c.ClientID == "blind" {
		return packet.ErrNotAuthorized
	}
	return nil
}

var (
	_ Authenticator = denyAuth{}
	_ Authorizer    = denyTopics{}
)

// TestAuthenticatorDenial: bad credentials are refused with 0x86 / 0x04.
func TestAuthenticatorDenial(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true, Authenticator: denyAuth{}})
	for _, v := range versions {
		c := tb.dial(v)
		ack := c.connect("a", func(p *packet.Connect) {
			p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, "u", true, []byte("x")
		})
		if ack.ReasonCode != pick(v, 0x86, 0x04) {
			t.Fatalf("%v: reason 0x%02x", v, ack.ReasonCode)
		}
		c.expectClosed()
		tb.connect("b", v, func(p *packet.Connect) {
			p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, "u", true, []byte("secret")
		})
	}
}

// TestAuthorizerDenial covers publish, subscribe, receive and will checks.
func TestAuthorizerDenial(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true, Authorizer: denyTopics{}})
	s := tb.connect("s", packet.V5)
	if a := s.subscribe(1, "forbidden/#", 1); a.ReasonCodes[0] != 0x87 {
		t.Fatalf("suback 0x%02x", a.ReasonCodes[0])
	}
	s.subscribe(2, "#", 1)
	blind := tb.connect("blind", packet.V311)
	blind.subscribe(1, "#", 1)
	p := tb.connect("p", packet.V5)
	p.publish("forbidden", "x", 1, false, 1)
	if a := p.expect(packet.PUBACK).(*packet.Ack); a.ReasonCode != 0x87 {
		t.Fatalf("puback 0x%02x", a.ReasonCode)
	}
	p.publish("ok", "y", 0, false, 0)
	s.expectPublish("ok", "y")
	blind.expectNone()
	w := tb.dial(packet.V311)
	if a := w.connect("w", withWill("forbidden", "x")); a.ReasonCode != 0x05 {
		t.Fatalf("will connack 0x%02x", a.ReasonCode)
	}
	if tb.Stats().Drops["not_authorized"] < 2 {
		t.Fatalf("drops %v", tb.Stats().Drops)
	}
}

// scramAuth is a two-step enhanced authenticator.
type scramAuth struct{ denyAuth }

func (scramAuth) Authenticate(context.Context, *ClientInfo, *packet.Connect) error { return nil }

func (scramAuth) AuthExchange(_ context.Context, _ *ClientInfo, method string, data []byte) ([]byte, bool, error) {
	if method != "TEST" {
		return nil, false, packet.ErrBadAuthenticationMethod
	}
	switch string(data) {
	case "hello":
		return []byte("challenge"), true, nil
	case "response":
		return []byte("welcome"), false, nil
	}
	return nil, false, packet.ErrNotAuthorized
}

// TestEnhancedAuth [MQTT-4.12]: CONNECT, AUTH 0x18 exchange, CONNACK, then
// re-authentication with AUTH 0x19, and a failing re-authentication.
func TestEnhancedAuth(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true, Authenticator: scramAuth{}})
	c := tb.dial(packet.V5)
	authProps := func(code byte, data string) *packet.Auth {
		a := &packet.Auth{ReasonCode: code}
		a.Props.AuthMethod, a.Props.AuthData = "TEST", []byte(data)
		a.Props.Set(packet.PropAuthMethod)
		a.Props.Set(packet.PropAuthData)
		return a
	}
	cp := &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "e"}
	cp.Props.AuthMethod, cp.Props.AuthData = "TEST", []byte("hello")
	cp.Props.Set(packet.PropAuthData)
	c.send(cp)
	a := c.expect(packet.AUTH).(*packet.Auth)
	if a.ReasonCode != 0x18 || string(a.Props.AuthData) != "challenge" {
		t.Fatalf("auth %+v", a)
	}
	c.send(authProps(0x18, "response"))
	ack := c.expect(packet.CONNACK).(*packet.Connack)
	if ack.ReasonCode != 0 || string(ack.Props.AuthData) != "welcome" {
		t.Fatalf("connack %+v", ack)
	}
	c.send(authProps(0x19, "response"))
	if a := c.expect(packet.AUTH).(*packet.Auth); a.ReasonCode != 0 {
		t.Fatalf("reauth 0x%02x", a.ReasonCode)
	}
	// A two-step re-authentication [MQTT-4.12.1-1].
	c.send(authProps(0x19, "hello"))
	if a := c.expect(packet.AUTH).(*packet.Auth); a.ReasonCode != 0x18 {
		t.Fatalf("reauth step 0x%02x", a.ReasonCode)
	}
	c.send(authProps(0x18, "response"))
	if a := c.expect(packet.AUTH).(*packet.Auth); a.ReasonCode != 0 || string(a.Props.AuthData) != "welcome" {
		t.Fatalf("reauth end %+v", a)
	}
	c.send(authProps(0x19, "wrong"))
	got := c.expectClosed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != 0x87 {
		t.Fatalf("got %v", got)
	}
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
			s2.expectNone()
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
	s.expectNone()
	s.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m1.PacketID})
	s.expectPublish("w", "3")
	s.expectNone()
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

// fakeRemote records what a remote route receives.
type fakeRemote struct {
	mu   sync.Mutex
	msgs []string
}

func (f *fakeRemote) Deliver(m *Message, qos byte) {
	f.mu.Lock()
	f.msgs = append(f.msgs, m.Topic+"@"+string(rune('0'+qos)))
	f.mu.Unlock()
}

func (f *fakeRemote) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.msgs...)
}

var _ RemoteRoute = (*fakeRemote)(nil)

// TestRemoteRoute: a remote subscription receives matching messages once,
// not messages marked Local, and nothing after it is removed.
func TestRemoteRoute(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	r := &fakeRemote{}
	var router Router = tb.Broker
	if err := router.SubscribeRemote("a/#", 1, r); err != nil {
		t.Fatal(err)
	}
	router.SubscribeRemote("a/b", 0, r)
	p := tb.connect("p", packet.V311)
	p.publish("a/b", "x", 2, false, 1)
	p.expect(packet.PUBREC)
	done := make(chan error, 1)
	tb.Publish(context.Background(), &Message{Topic: "a/c", Payload: []byte("y"), Local: true}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := r.got(); len(got) != 1 || got[0] != "a/b@1" {
		t.Fatalf("remote got %v", got)
	}
	router.UnsubscribeRemote("a/#", r)
	router.UnsubscribeRemote("a/b", r)
	tb.Publish(context.Background(), &Message{Topic: "a/b"}, nil)
	if got := r.got(); len(got) != 1 {
		t.Fatalf("remote got %v after unsubscribe", got)
	}
}

// TestPublishAPI: Publish waits for durable queueing to persistent sessions.
func TestPublishAPI(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	s := tb.connect("s", packet.V5, persistent(60))
	s.subscribe(1, "api", 1)
	done := make(chan error, 1)
	tb.Publish(context.Background(), &Message{Topic: "api", Payload: []byte("z"), QoS: 1}, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTime):
		t.Fatal("done not called")
	}
	s.expectPublish("api", "z")
	tb.Publish(context.Background(), &Message{Topic: "bad/+"}, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, packet.ErrTopicNameInvalid) {
		t.Fatalf("err %v", err)
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
	all.expectNone() // [MQTT-4.7.2-1]
}

// eventHooks counts events.
type eventHooks struct {
	mu                                        sync.Mutex
	connects, disconnects, subs, unsubs, drop int
}

func (h *eventHooks) OnConnect(*ClientInfo, bool)           { h.mu.Lock(); h.connects++; h.mu.Unlock() }
func (h *eventHooks) OnDisconnect(*ClientInfo, error)       { h.mu.Lock(); h.disconnects++; h.mu.Unlock() }
func (h *eventHooks) OnSubscribe(*ClientInfo, string, byte) { h.mu.Lock(); h.subs++; h.mu.Unlock() }
func (h *eventHooks) OnUnsubscribe(*ClientInfo, string)     { h.mu.Lock(); h.unsubs++; h.mu.Unlock() }
func (h *eventHooks) OnDrop(string, *Message, DropReason)   { h.mu.Lock(); h.drop++; h.mu.Unlock() }

var (
	_ ConnectHook    = (*eventHooks)(nil)
	_ DisconnectHook = (*eventHooks)(nil)
	_ DropHook       = (*eventHooks)(nil)
)

// TestHooksAndStats checks the event callbacks and counters.
func TestHooksAndStats(t *testing.T) {
	h := &eventHooks{}
	tb := startBroker(t, Options{AllowAnonymous: true, Hooks: []Hook{h}})
	c := tb.connect("c", packet.V5)
	c.subscribe(1, "a", 0)
	c.send(&packet.Unsubscribe{PacketID: 2, Filters: []string{"a"}})
	c.expect(packet.UNSUBACK)
	c.publish("a", "x", 0, false, 0)
	c.send(&packet.Disconnect{})
	c.expectClosed()
	eventually(t, "disconnect hook", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.disconnects == 1 })
	st := tb.Stats()
	if st.Connects != 1 || st.PublishesIn != 1 || st.BytesIn == 0 || st.BytesOut == 0 {
		t.Fatalf("stats %+v", st)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.connects != 1 || h.subs != 1 || h.unsubs != 1 {
		t.Fatalf("hooks %+v", h)
	}
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

// TestShutdown: v5 clients get DISCONNECT 0x8B, persistent sessions are
// kept in the store, and no goroutine is left (TestMain checks).
func TestShutdown(t *testing.T) {
	st := memStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	c5 := tb.connect("c5", packet.V5, persistent(600))
	c5.subscribe(1, "keep", 1)
	c3 := tb.connect("c3", packet.V311)
	tb.stop()
	got := c5.expectClosed()
	if len(got) != 1 || got[0].(*packet.Disconnect).ReasonCode != 0x8B {
		t.Fatalf("v5 got %v", got)
	}
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
// published after the restart, and a session that expired while the broker
// was down is purged on load.
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
// resumes with PUBREL after a restart, not with the PUBLISH.
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
	s2.expectNone()
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

// TestTakeoverWithHeldPublish: a clean-start takeover ends the session
// while an interceptor holds a QoS 2 publish of the old connection; its late
// confirmation must not revive or corrupt the new session.
func TestTakeoverWithHeldPublish(t *testing.T) {
	h := &holdInterceptor{added: make(chan struct{}, 16)}
	tb := startBroker(t, Options{AllowAnonymous: true, Interceptors: []Interceptor{h}})
	old := tb.connect("x", packet.V5, persistent(600))
	old.publish("t", "held", 2, false, 7)
	<-h.added
	nw := tb.connect("x", packet.V5) // clean start
	old.expectClosed()
	h.release(0, nil)
	nw.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 7})
	if a := nw.expect(packet.PUBCOMP).(*packet.Ack); a.ReasonCode != 0x92 {
		t.Fatalf("pubcomp 0x%02x: the old session's packet id leaked into the new one", a.ReasonCode)
	}
}

// TestThrottleV311: a 3.1.1 client cannot be told our Receive Maximum, so
// while that many of its publishes are held the broker stops reading it.
func TestThrottleV311(t *testing.T) {
	h := &holdInterceptor{added: make(chan struct{}, 16)}
	cfg := testConfig()
	cfg.ReceiveMaximum = 2
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true, Interceptors: []Interceptor{h}})
	p := tb.connect("p", packet.V311)
	for i := uint16(1); i <= 3; i++ {
		p.publish("t", "x", 1, false, i)
	}
	<-h.added
	<-h.added
	select {
	case <-h.added:
		t.Fatal("third publish read while two are held")
	case <-time.After(quietTime):
	}
	h.release(0, nil)
	<-h.added // now the third is read
	h.release(1, nil)
	h.release(2, nil)
	for i := uint16(1); i <= 3; i++ {
		if a := p.expect(packet.PUBACK).(*packet.Ack); a.PacketID != i {
			t.Fatalf("ack %d", a.PacketID)
		}
	}
}
