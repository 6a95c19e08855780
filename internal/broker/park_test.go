package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/netpoll"
	"github.com/culexmq/culex/internal/testcert"
)

// TestIdleConnsHoldNoGoroutine: a connected, subscribed, idle plain TCP
// client has no goroutine in the broker; it still gets its messages.
func TestIdleConnsHoldNoGoroutine(t *testing.T) {
	if !netpoll.CanPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	const n = 200
	tb := startBroker(t, Options{AllowAnonymous: true})
	base := runtime.NumGoroutine()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = tb.connect("idle-"+strconv.Itoa(i), packet.V311)
		clients[i].subscribe(1, "idle/"+strconv.Itoa(i), 1)
	}
	eventually(t, "idle readers to park", func() bool { return runtime.NumGoroutine()-base < n/20 })
	pub := tb.connect("pub", packet.V5)
	for i := 0; i < n; i += 37 {
		pub.publish("idle/"+strconv.Itoa(i), "x", 0, false, 0)
		clients[i].expectPublish("idle/"+strconv.Itoa(i), "x")
	}
}

// TestKeepAliveExtendedByTraffic: a parked connection's deadline moves
// with every packet, so a client that pings more often than its keep-alive
// is never cut off, and one that stops is.
func TestKeepAliveExtendedByTraffic(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	c := tb.connect("ka", packet.V5, func(p *packet.Connect) { p.KeepAlive = 1 })
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); <-tick.C {
		c.send(&packet.Pingreq{})
		c.expect(packet.PINGRESP)
	}
	start := time.Now()
	c.expectDisconnect(0x8D)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed %v after the last ping", d)
	}
}

// TestReaderBacklog: with few reader goroutines, many clients that are
// ready at once are served from the backlog, and readers that block (here
// in an authenticator) do not stop the others: with every reader bounded
// to two, the stall check lifts the bound; with one fast slot and no stall
// check, a reader gives its slot up before it calls the authenticator.
func TestReaderBacklog(t *testing.T) {
	if !netpoll.CanPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	t.Run("stall check", func(t *testing.T) {
		readerBacklog(t, netpoll.Bounds{All: 2, Fast: 2, Stall: netpoll.StallCheck})
	})
	t.Run("fast slot given up", func(t *testing.T) {
		readerBacklog(t, netpoll.Bounds{All: netpoll.MaxActive, Fast: 1, Stall: time.Hour})
	})
}

func readerBacklog(t *testing.T, bounds netpoll.Bounds) {
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	auth := authFunc(func(ctx context.Context, c *ClientInfo, p *packet.Connect) error {
		if p.Username == "slow" {
			<-release // past the CONNECT timeout too
		}
		return nil
	})
	tb := startBroker(t, Options{AllowAnonymous: true, Authenticator: auth})
	tb.mu.Lock()
	tb.readers = bounds
	tb.mu.Unlock()

	// Three readers block; the others must still connect and talk.
	slow := make([]*client, 3)
	for i := range slow {
		slow[i] = tb.dial(packet.V311)
	}
	eventually(t, "three parked connections", func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		parked := 0
		for c := range tb.conns {
			if c.sock.Parked() {
				parked++
			}
		}
		return parked == len(slow)
	})
	for i := range slow {
		slow[i].send(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 60,
			ClientID: "slow-" + strconv.Itoa(i), Username: "slow", UsernameFlag: true})
	}
	const n = 40
	var wg sync.WaitGroup
	subs := make([]*client, n)
	for i := range subs {
		subs[i] = tb.dial(packet.V311)
	}
	errs := make(chan string, n)
	for i, c := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.send(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 60, ClientID: "b-" + strconv.Itoa(i)})
			if p, err := c.read(waitTime); err != nil || p.Type() != packet.CONNACK {
				errs <- "connect " + strconv.Itoa(i) + ": " + errString(err)
				return
			}
			c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "all", QoS: 1}}})
			if p, err := c.read(waitTime); err != nil || p.Type() != packet.SUBACK {
				errs <- "subscribe " + strconv.Itoa(i) + ": " + errString(err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		return
	}
	pub := tb.connect("pub", packet.V311)
	pub.publish("all", "m", 1, false, 1)
	pub.expect(packet.PUBACK)
	for _, c := range subs {
		p := c.expectPublish("all", "m")
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	close(release)
	for _, c := range slow {
		c.expect(packet.CONNACK)
	}
}

type authFunc func(ctx context.Context, c *ClientInfo, p *packet.Connect) error

func (f authFunc) Authenticate(ctx context.Context, c *ClientInfo, p *packet.Connect) error {
	return f(ctx, c, p)
}

func errString(err error) string {
	if err == nil {
		return "wrong packet"
	}
	return err.Error()
}

// startTLS serves tb's broker over TLS on a second loopback listener, the
// way the listener package does: the handshake first, then Handle.
func startTLS(tb *testBroker) (addr string, conf *tls.Config) {
	t := tb.t
	ca := testcert.NewCA(t, "park-ca")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := nc.(*tls.Conn)
				if tc.Handshake() != nil {
					tc.Close()
					return
				}
				tb.Handle(tc, listener.ConnInfo{Listener: "ssl://test", Scheme: "ssl", Remote: nc.RemoteAddr(), Local: nc.LocalAddr()})
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
}

// batchConn holds what is written to it while batching and sends it in
// one write on flush: several TLS records in one TCP segment.
type batchConn struct {
	net.Conn
	batching bool
	buf      []byte
}

func (c *batchConn) Write(b []byte) (int, error) {
	if c.batching {
		c.buf = append(c.buf, b...)
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *batchConn) flush() error {
	c.batching = false
	_, err := c.Conn.Write(c.buf)
	return err
}

// TestTLSParked: idle TLS connections hold no goroutine either, and
// records that crypto/tls read ahead (several in one segment, which a peek
// at the socket cannot see) are handled without waiting for more bytes.
func TestTLSParked(t *testing.T) {
	if !netpoll.CanPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	tb := startBroker(t, Options{AllowAnonymous: true})
	addr, conf := startTLS(tb)
	dial := func() (*client, *batchConn) {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		bc := &batchConn{Conn: raw}
		tc := tls.Client(bc, conf)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tc.Close() })
		return &client{t: t, nc: tc, v: packet.V5}, bc
	}

	// CONNECT, SUBSCRIBE, PUBLISH and PINGREQ as four records in one write.
	c, bc := dial()
	bc.batching = true
	c.send(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 60, ClientID: "batched"})
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "tls/#", QoS: 1}}})
	c.publish("tls/x", "ahead", 1, false, 2)
	c.send(&packet.Pingreq{})
	if err := bc.flush(); err != nil {
		t.Fatal(err)
	}
	c.expect(packet.CONNACK)
	c.expect(packet.SUBACK)
	var gotAck, gotPub bool
	for !gotAck || !gotPub {
		switch p := c.expectAny().(type) {
		case *packet.Ack:
			gotAck = p.Kind == packet.PUBACK && p.PacketID == 2
		case *packet.Publish:
			gotPub = p.Topic == "tls/x" && string(p.Payload) == "ahead"
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
	}
	c.expect(packet.PINGRESP)

	expectParked(t, "tls", func() *client { c, _ := dial(); return c }, c)
}

// expectParked connects clients from dial, each subscribed to prefix/i,
// checks that their readers park (no goroutine each) and that they still
// get what pub publishes, and returns them.
func expectParked(t *testing.T, prefix string, dial func() *client, pub *client) []*client {
	t.Helper()
	const n = 50
	base := runtime.NumGoroutine()
	idle := make([]*client, n)
	for i := range idle {
		idle[i] = dial()
		idle[i].connect(prefix + "-" + strconv.Itoa(i))
		idle[i].subscribe(1, prefix+"/"+strconv.Itoa(i), 0)
	}
	eventually(t, "idle "+prefix+" readers to park", func() bool { return runtime.NumGoroutine()-base < n/10 })
	for i := 0; i < n; i += 7 {
		pub.publish(prefix+"/"+strconv.Itoa(i), "x", 0, false, 0)
		idle[i].expectPublish(prefix+"/"+strconv.Itoa(i), "x")
	}
	return idle
}

// TestWebSocketParked: idle WebSocket connections, over TCP and over TLS,
// hold no goroutine either; a parked one still answers a WebSocket ping,
// an MQTT packet split across frames, with a ping between them, reaches the
// broker whole, and a client that stops inside a frame is disconnected at
// its keep-alive.
func TestWebSocketParked(t *testing.T) {
	if !netpoll.CanPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	for _, scheme := range []string{"ws", "wss"} {
		t.Run(scheme, func(t *testing.T) { webSocketParked(t, scheme) })
	}
}

func webSocketParked(t *testing.T, scheme string) {
	// A short write timeout: a pong written long after the last batch's
	// deadline passed must not fail for it.
	cfg := testConfig()
	cfg.WriteTimeout = 200 * time.Millisecond
	tb := startBroker(t, Options{AllowAnonymous: true, Config: cfg})
	lc := config.Listener{URL: scheme + "://127.0.0.1:0/mqtt"}
	dialer := &websocket.Dialer{HandshakeTimeout: waitTime}
	if scheme == "wss" {
		ca := testcert.NewCA(t, "ws-ca")
		lc.TLS.CertFile, lc.TLS.KeyFile = testcert.WriteFiles(t, t.TempDir(), "ws", ca.Server(t, "127.0.0.1"))
		dialer.TLSClientConfig = &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
	}
	l, err := listener.New(lc, tb.Handle, nil)
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(func() { l.Close() })
	dial := func() (*client, *wsClientConn) {
		ws, _, err := dialer.Dial(l.URL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		wc := &wsClientConn{Conn: ws}
		return &client{t: t, nc: wc, v: packet.V5}, wc
	}

	pub, pubWS := dial()
	pub.connect(scheme + "-pub")
	// gorilla has no goroutine per connection: it reads on the caller's.
	idle := expectParked(t, scheme, func() *client { c, _ := dial(); return c }, pub)

	// A ping to a parked connection is answered.
	pong := make(chan string, 1)
	pubWS.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := pubWS.WriteControl(websocket.PingMessage, []byte("there?"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// gorilla runs the pong handler from within a read: a PINGREQ's
	// PINGRESP gives it one.
	pub.send(&packet.Pingreq{})
	pub.expect(packet.PINGRESP)
	select {
	case s := <-pong:
		if s != "there?" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}

	// A PUBLISH in two frames with a ping between them.
	b, err := (&packet.Publish{Topic: scheme + "/0", Payload: []byte("split")}).Encode(nil, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	if err := pubWS.WriteMessage(websocket.BinaryMessage, b[:3]); err != nil {
		t.Fatal(err)
	}
	if err := pubWS.WriteControl(websocket.PingMessage, nil, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := pubWS.WriteMessage(websocket.BinaryMessage, b[3:]); err != nil {
		t.Fatal(err)
	}
	idle[0].expectPublish(scheme+"/0", "split")

	// Keep-alive: the first byte of a frame header (over TLS, in a record
	// of its own), then nothing; and WebSocket pings alone, which are not
	// MQTT packets [MQTT-3.1.2-24].
	ka := func(p *packet.Connect) { p.KeepAlive = 1 }
	stalled, stalledWS := dial()
	stalled.connect(scheme+"-stalled", ka)
	pinger, pingerWS := dial()
	pinger.connect(scheme+"-pinger", ka)
	start := time.Now()
	if _, err := stalledWS.UnderlyingConn().Write([]byte{0x82}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if pingerWS.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	closed := make(chan error, 2)
	for _, c := range []*client{stalled, pinger} {
		go func() {
			for {
				if _, err := c.read(waitTime); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						err = fmt.Errorf("%v later, connection still open", waitTime)
					} else if d := time.Since(start); d < time.Second {
						err = fmt.Errorf("closed after %v, before the keep-alive of 1 s (x1.5) ran out", d)
					} else {
						err = nil
					}
					closed <- err
					return
				}
			}
		}()
	}
	for range 2 {
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	}
}

// wsClientConn is a gorilla WebSocket client as a net.Conn: one binary
// message per Write, messages read as one stream.
type wsClientConn struct {
	*websocket.Conn
	r io.Reader
}

func (c *wsClientConn) Read(p []byte) (int, error) {
	for {
		if c.r != nil {
			n, err := c.r.Read(p)
			if err == io.EOF {
				c.r = nil
				if n == 0 {
					continue
				}
				err = nil
			}
			return n, err
		}
		_, r, err := c.NextReader()
		if err != nil {
			return 0, err
		}
		c.r = r
	}
}

func (c *wsClientConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsClientConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// TestTLSStalledRecordTimesOut: a TLS client that sends part of a record
// and then nothing is disconnected at its keep-alive, although its reader
// waits inside crypto/tls for the rest of the record.
func TestTLSStalledRecordTimesOut(t *testing.T) {
	if !netpoll.CanPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	tb := startBroker(t, Options{AllowAnonymous: true})
	addr, conf := startTLS(tb)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, conf)
	t.Cleanup(func() { tc.Close() })
	c := &client{t: t, nc: tc, v: packet.V5}
	c.connect("stalled", func(p *packet.Connect) { p.KeepAlive = 1 })
	// The first bytes of an application data record header, no more.
	if _, err := raw.Write([]byte{0x17, 0x03}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.expectClosed()
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v, before the keep-alive of 1 s (x1.5) ran out", d)
	}
}
