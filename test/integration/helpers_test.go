package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// waitTimeout bounds every "this must happen" wait; tests fail rather than hang.
const waitTimeout = 10 * time.Second

// Negative checks ("nothing (more) arrives") are tied to a positive event,
// not to a quiet window: after whatever must not reach a client, a marker
// message is published on a topic the client receives, and the client must
// get the marker with nothing unwanted before it. This is sound because
// the broker delivers one publisher's messages to a subscription in the
// order it received them [MQTT-4.6.0-5] and handles one connection's
// packets in order (a SUBSCRIBE's retained messages are queued before the
// client's next PUBLISH is read); a will is published before the broker
// counts its client gone (waitClients). A marker at QoS 0 passes a Receive
// Maximum window that holds QoS 1 messages back; one at QoS 1 queues
// behind a resumed session's messages.

// markerPayload is the payload of every marker message.
const markerPayload = "marker"

// expectMarker fails unless the next message on ch is on the marker topic.
func expectMarker(t *testing.T, ch <-chan msg, marker string) {
	t.Helper()
	if got := recvUntil(t, ch, marker); len(got) > 0 {
		t.Fatalf("got %v before the marker on %s", summarize(got), marker)
	}
}

// lockedBuffer collects broker logs; they are printed only if the test fails.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startBroker starts an in-memory broker with a TCP and a WebSocket listener on
// loopback port 0 and shuts it down when the test ends. mods adjust the config.
func startBroker(t *testing.T, mods ...func(*config.Config)) *server.Server {
	t.Helper()
	srv, _ := startBrokerLogs(t, mods...)
	return srv
}

// startBrokerLogs is startBroker that also returns the broker's log.
func startBrokerLogs(t *testing.T, mods ...func(*config.Config)) (*server.Server, *lockedBuffer) {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = ""
	cfg.LogLevel = "debug"
	cfg.SysInterval = 0
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}, {URL: "ws://127.0.0.1:0/mqtt"}}
	for _, m := range mods {
		m(&cfg)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := server.New(cfg, logger)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("server.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server.Shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("broker log:\n%s", tail(logs.String(), 200))
		}
	})
	return srv, logs
}

// waitClients waits until the broker counts n connected clients: the way to
// know it has processed a DISCONNECT or a close before the next step.
func waitClients(t *testing.T, srv *server.Server, n int64) {
	t.Helper()
	var got int64
	waitFor(t, waitTimeout, fmt.Sprintf("%d connected clients", n), func() bool {
		got = srv.Broker().Stats().ClientsConnected
		return got == n
	})
}

// openSys publishes $SYS every 100 ms and lets anonymous clients read it
// (the default keeps $SYS/# for superusers).
func openSys(c *config.Config) {
	c.SysInterval = 100 * time.Millisecond
	c.Auth.SysSuperuserOnly = false
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... %d lines elided", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// tcpAddr is the host:port of the broker's first TCP listener.
func tcpAddr(t *testing.T, srv *server.Server) string {
	t.Helper()
	return hostPort(t, srv.URL("tcp"))
}

func hostPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("listener URL %q: %v", raw, err)
	}
	return u.Host
}

// msg is a received application message, whichever client received it.
type msg struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Dup     bool
	Props   *paho.PublishProperties // v5 only
	Alias   uint16                  // v5: Topic Alias on the wire, 0 if none
}

func (m msg) String() string {
	return fmt.Sprintf("%s %q qos=%d retain=%v dup=%v", m.Topic, m.Payload, m.QoS, m.Retain, m.Dup)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// recvN receives exactly n messages within timeout.
func recvN(t *testing.T, ch <-chan msg, n int, timeout time.Duration) []msg {
	t.Helper()
	out := make([]msg, 0, n)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for len(out) < n {
		select {
		case m := <-ch:
			out = append(out, m)
		case <-timer.C:
			t.Fatalf("received %d of %d messages within %v: %v", len(out), n, timeout, summarize(out))
		}
	}
	return out
}

func recv1(t *testing.T, ch <-chan msg) msg {
	t.Helper()
	return recvN(t, ch, 1, waitTimeout)[0]
}

// recvUntil returns every message received before one on the marker topic
// (which it consumes). Publishing a marker after the messages that must not
// arrive turns a negative check into a positive one.
func recvUntil(t *testing.T, ch <-chan msg, marker string) []msg {
	t.Helper()
	var out []msg
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case m := <-ch:
			if m.Topic == marker {
				return out
			}
			out = append(out, m)
		case <-timer.C:
			t.Fatalf("marker %q not received within %v; got %v", marker, waitTimeout, summarize(out))
		}
	}
}

func summarize(ms []msg) string {
	var b strings.Builder
	for i, m := range ms {
		if i == 10 {
			fmt.Fprintf(&b, " ... (%d total)", len(ms))
			break
		}
		b.WriteString(m.String())
		b.WriteString("; ")
	}
	return b.String()
}

// ---- MQTT 5.0 through paho.golang ----

// v5Client is a paho.golang client whose received messages go to msgs and
// whose server DISCONNECT, if any, goes to disc. It resolves topic aliases
// the broker sends and records any alias above what it declared.
type v5Client struct {
	*paho.Client
	t       *testing.T
	conn    net.Conn
	connack *paho.Connack
	msgs    chan msg
	disc    chan *paho.Disconnect
	lost    chan error

	aliasMax      uint16
	aliasMu       sync.Mutex
	aliases       map[uint16]string
	aliasBad      atomic.Int64 // aliases above aliasMax or unknown
	aliasReceived atomic.Int64 // PUBLISHes that carried an alias
}

// dialV5 connects a v5 client to addr with cp; it returns the CONNACK and the
// Connect error as they are, so tests can check refusals. cfgMod adjusts the
// paho client config (nil for none).
func dialV5(t *testing.T, addr string, cp *paho.Connect, cfgMod func(*paho.ClientConfig)) (*v5Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c := &v5Client{
		t:       t,
		conn:    conn,
		msgs:    make(chan msg, 20000),
		disc:    make(chan *paho.Disconnect, 1),
		lost:    make(chan error, 4),
		aliases: map[uint16]string{},
	}
	if cp.Properties != nil && cp.Properties.TopicAliasMaximum != nil {
		c.aliasMax = *cp.Properties.TopicAliasMaximum
	}
	cfg := paho.ClientConfig{
		ClientID:          cp.ClientID,
		Conn:              conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.onPublish},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
		},
		OnClientError: func(err error) {
			select {
			case c.lost <- err:
			default:
			}
		},
		PacketTimeout: waitTimeout,
	}
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	c.Client = paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	c.connack = ca
	if err != nil {
		conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() {
		select {
		case <-c.Done():
		default:
			_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		}
		conn.Close()
	})
	return c, ca, nil
}

// connectV5 connects a v5 client or fails the test.
func connectV5(t *testing.T, addr string, cp *paho.Connect) *v5Client {
	t.Helper()
	c, ca, err := dialV5(t, addr, cp, nil)
	if err != nil {
		t.Fatalf("v5 connect %q: %v (connack %+v)", cp.ClientID, err, ca)
	}
	return c
}

// v5Connect builds a CONNECT; expiry is the Session Expiry Interval in seconds.
func v5Connect(id string, cleanStart bool, expiry uint32) *paho.Connect {
	return &paho.Connect{
		ClientID:   id,
		CleanStart: cleanStart,
		KeepAlive:  30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(expiry)},
	}
}

func (c *v5Client) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	m := msg{Topic: p.Topic, Payload: bytes.Clone(p.Payload), QoS: p.QoS, Retain: p.Retain, Dup: p.Duplicate(), Props: p.Properties}
	if p.Properties != nil && p.Properties.TopicAlias != nil {
		a := *p.Properties.TopicAlias
		m.Alias = a
		c.aliasReceived.Add(1)
		c.aliasMu.Lock()
		switch {
		case a == 0 || a > c.aliasMax:
			c.aliasBad.Add(1)
		case p.Topic != "":
			c.aliases[a] = p.Topic
		default:
			t, ok := c.aliases[a]
			if !ok {
				c.aliasBad.Add(1)
			}
			m.Topic = t
		}
		c.aliasMu.Unlock()
	}
	c.msgs <- m
	return true, nil
}

func (c *v5Client) subscribe(subs ...paho.SubscribeOptions) *paho.Suback {
	c.t.Helper()
	return c.subscribeID(0, subs...)
}

// subscribeID subscribes with Subscription Identifier id (0: none).
func (c *v5Client) subscribeID(id int, subs ...paho.SubscribeOptions) *paho.Suback {
	c.t.Helper()
	s := &paho.Subscribe{Subscriptions: subs}
	if id > 0 {
		s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, s)
	if err != nil {
		c.t.Fatalf("subscribe %+v: %v (suback %+v)", subs, err, sa)
	}
	return sa
}

func sub(filter string, qos byte) paho.SubscribeOptions {
	return paho.SubscribeOptions{Topic: filter, QoS: qos}
}

// publish publishes and, for QoS 1 and 2, waits for the acknowledgement.
func (c *v5Client) publish(topic string, qos byte, payload string, mods ...func(*paho.Publish)) *paho.PublishResponse {
	c.t.Helper()
	p := &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)}
	for _, m := range mods {
		m(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pr, err := c.Publish(ctx, p)
	if err != nil {
		c.t.Fatalf("publish %s qos %d: %v (response %+v)", topic, qos, err, pr)
	}
	return pr
}

func retained(p *paho.Publish) { p.Retain = true }

func withProps(pp *paho.PublishProperties) func(*paho.Publish) {
	return func(p *paho.Publish) { p.Properties = pp }
}

// kill closes the client's TCP connection without DISCONNECT: an abnormal close.
func (c *v5Client) kill() {
	c.conn.Close()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		c.t.Fatalf("paho client did not stop after its connection closed")
	}
}

// disconnect sends DISCONNECT with reason code rc and waits for the client to stop.
func (c *v5Client) disconnect(rc byte, props *paho.DisconnectProperties) {
	c.t.Helper()
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: rc, Properties: props}); err != nil {
		c.t.Fatalf("disconnect: %v", err)
	}
}

// ---- MQTT 3.1.1 through paho.mqtt.golang ----

// v3Client is a paho.mqtt.golang client whose messages (including those that
// arrive for a resumed session before any Subscribe) go to msgs.
type v3Client struct {
	mqtt.Client
	t              *testing.T
	msgs           chan msg
	lost           chan error
	sessionPresent bool
	conn           atomic.Pointer[net.Conn] // TCP only
}

// connectV3 connects an MQTT 3.1.1 client to brokerURL (tcp:// or ws://).
func connectV3(t *testing.T, brokerURL, id string, clean bool, mods ...func(*mqtt.ClientOptions)) *v3Client {
	t.Helper()
	c, err := dialV3(t, brokerURL, id, clean, mods...)
	if err != nil {
		t.Fatalf("v3 connect %q: %v", id, err)
	}
	return c
}

func dialV3(t *testing.T, brokerURL, id string, clean bool, mods ...func(*mqtt.ClientOptions)) (*v3Client, error) {
	t.Helper()
	c := &v3Client{t: t, msgs: make(chan msg, 20000), lost: make(chan error, 4)}
	handler := func(_ mqtt.Client, m mqtt.Message) { c.msgs <- v3msg(m) }
	opts := mqtt.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(id).
		SetCleanSession(clean).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetOrderMatters(true).
		SetDefaultPublishHandler(handler).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		})
	if strings.HasPrefix(brokerURL, "tcp://") {
		opts.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			if err == nil {
				c.conn.Store(&conn)
			}
			return conn, err
		})
	}
	for _, m := range mods {
		m(opts)
	}
	c.Client = mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	c.sessionPresent = tok.(*mqtt.ConnectToken).SessionPresent()
	t.Cleanup(func() {
		if c.IsConnectionOpen() {
			c.Disconnect(100)
		}
	})
	return c, nil
}

func v3msg(m mqtt.Message) msg {
	return msg{Topic: m.Topic(), Payload: bytes.Clone(m.Payload()), QoS: m.Qos(), Retain: m.Retained(), Dup: m.Duplicate()}
}

func (c *v3Client) subscribe(filter string, qos byte) byte {
	c.t.Helper()
	tok := c.Subscribe(filter, qos, func(_ mqtt.Client, m mqtt.Message) { c.msgs <- v3msg(m) })
	if !tok.WaitTimeout(waitTimeout) {
		c.t.Fatalf("v3 subscribe %q: timed out", filter)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("v3 subscribe %q: %v", filter, err)
	}
	st := tok.(*mqtt.SubscribeToken)
	return st.Result()[filter]
}

func (c *v3Client) publish(topic string, qos byte, retain bool, payload string) {
	c.t.Helper()
	tok := c.Publish(topic, qos, retain, []byte(payload))
	if !tok.WaitTimeout(waitTimeout) {
		c.t.Fatalf("v3 publish %q: timed out", topic)
	}
	if err := tok.Error(); err != nil {
		c.t.Fatalf("v3 publish %q: %v", topic, err)
	}
}

// kill closes the TCP connection under the client: an abnormal close.
func (c *v3Client) kill() {
	c.t.Helper()
	p := c.conn.Load()
	if p == nil {
		c.t.Fatalf("v3 kill: no TCP connection recorded")
	}
	(*p).Close()
}

// ---- small utilities ----

// drain discards whatever is already queued in ch.
func drain(ch <-chan msg) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// payloads returns the payloads of ms as strings.
func payloads(ms []msg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Payload)
	}
	return out
}

// closedWithin reports whether conn is closed by the peer within d; data read
// meanwhile is discarded.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}
