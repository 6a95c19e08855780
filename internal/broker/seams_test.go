package broker

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// holdInterceptor holds every message until released.

type holdInterceptor struct {
	mu       sync.Mutex
	held     []func(error)
	msgs     []string
	after    []int // for each message, how many releases came before it
	released int   // release calls so far
	added    chan struct{}
}

func (h *holdInterceptor) Intercept(_ context.Context, _ *ClientInfo, m *Message, done func(error)) {
	h.mu.Lock()
	h.held = append(h.held, done)
	h.msgs = append(h.msgs, string(m.Payload))
	h.after = append(h.after, h.released)
	h.mu.Unlock()
	h.added <- struct{}{}
}

func (h *holdInterceptor) release(i int, err error) {
	h.mu.Lock()
	f := h.held[i]
	h.released++
	h.mu.Unlock()
	f(err)
}

// releasesBefore is how many release calls came before message i arrived.
func (h *holdInterceptor) releasesBefore(i int) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.after[i]
}

var _ Interceptor = (*holdInterceptor)(nil)

// TestInterceptorHoldAndOrder: acks wait for the interceptor and go out in

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
	p.expectAlive() // no PUBACK before the PINGRESP
	h.release(2, nil)
	h.release(1, nil)
	p.expectAlive() // the first is still held, so no PUBACK yet
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
	p3.expectAlive() // no PUBREC for a 3.1.1 client: it retransmits
	// The marker, held like any message.
	p3.publish("t", markerPayload, 2, false, markerID)
	<-h.added
	h.release(2, nil)
	p3.expect(packet.PUBREC)
	s.expectMarker("t")
	// The retransmission goes through once the interceptor accepts it.
	p3.send(&packet.Publish{Topic: "t", Payload: []byte("y"), QoS: 2, PacketID: 1, Dup: true})
	<-h.added
	h.release(3, nil)
	p3.expect(packet.PUBREC)
	s.expectPublish("t", "y")
	if n := tb.Stats().Drops["intercepted"]; n != 2 {
		t.Fatalf("intercepted drops %d", n)
	}
}

// TestReceiveMaximumWithInterceptor [MQTT-3.3.4-9]: a client that sends more

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
	p.expectAlive() // its reader has routed "ok", so a copy for blind is queued by now
	s.expectPublish("ok", "y")
	blind.expectAlive()
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
	c.expectDisconnect(0x87)
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

// eventHooks counts events.

type eventHooks struct {
	mu                                        sync.Mutex
	connects, disconnects, subs, unsubs, drop int
}

func (h *eventHooks) OnConnect(*ClientInfo, bool) { h.mu.Lock(); h.connects++; h.mu.Unlock() }

func (h *eventHooks) OnDisconnect(*ClientInfo, error) { h.mu.Lock(); h.disconnects++; h.mu.Unlock() }

func (h *eventHooks) OnSubscribe(*ClientInfo, string, byte) { h.mu.Lock(); h.subs++; h.mu.Unlock() }

func (h *eventHooks) OnUnsubscribe(*ClientInfo, string) { h.mu.Lock(); h.unsubs++; h.mu.Unlock() }

func (h *eventHooks) OnDrop(string, *Message, DropReason) { h.mu.Lock(); h.drop++; h.mu.Unlock() }

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

// TestTakeoverWithHeldPublish: a clean-start takeover ends the session

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
	h.release(0, nil)
	<-h.added // now the third is read
	if n := h.releasesBefore(2); n == 0 {
		t.Fatal("third publish read while two were held")
	}
	h.release(1, nil)
	h.release(2, nil)
	for i := uint16(1); i <= 3; i++ {
		if a := p.expect(packet.PUBACK).(*packet.Ack); a.PacketID != i {
			t.Fatalf("ack %d", a.PacketID)
		}
	}
}
