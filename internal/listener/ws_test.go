package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/culexmq/culex/internal/config"
)

// wsDial connects a gorilla client (the real peer) to l.
func wsDial(t *testing.T, l *Listener, d *websocket.Dialer, protocols ...string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{}
	}
	d.HandshakeTimeout = 10 * time.Second
	d.Subprotocols = protocols
	url := l.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c, resp, nil
}

// readN reads binary messages from c until it has n bytes.
func readN(t *testing.T, c *websocket.Conn, n int) []byte {
	t.Helper()
	var got []byte
	for len(got) < n {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", len(got), n, err)
		}
		if typ != websocket.BinaryMessage {
			t.Fatalf("message type %d, want binary", typ)
		}
		got = append(got, msg...)
	}
	return got
}

func TestWebSocketStream(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0"}, nil)
	c, resp, err := wsDial(t, s.l, nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "mqtt" {
		t.Errorf("subprotocol %q, want mqtt", got)
	}
	connect := []byte("\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04dev1")
	pingreq, subscribe := []byte("\xc0\x00"), []byte("\x82\x06\x00\x01\x00\x01a\x00")
	frames := [][]byte{
		connect[:3], // a packet split across frames
		connect[3:],
		append(append([]byte{}, pingreq...), subscribe...), // two packets in one frame
		{}, // an empty frame
		pingreq[:1], pingreq[1:],
	}
	var want []byte
	for _, f := range frames {
		if err := c.WriteMessage(websocket.BinaryMessage, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, f...)
	}
	if got := readN(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("echo = %q, want %q", got, want)
	}
	a := s.next(t)
	if a.info.Scheme != SchemeWS || a.info.TLS != nil || a.info.Remote.String() != c.LocalAddr().String() {
		t.Errorf("info = %+v", a.info)
	}
	if _, ok := a.conn.(BuffersWriter); !ok {
		t.Errorf("%T is not a BuffersWriter", a.conn)
	}

	// Ping is answered with a pong carrying the same payload, between data.
	pong := make(chan string, 1)
	c.SetPongHandler(func(data string) error { pong <- data; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	c.WriteMessage(websocket.BinaryMessage, []byte("x"))
	readN(t, c, 1)
	select {
	case got := <-pong:
		if got != "are you there" {
			t.Errorf("pong %q", got)
		}
	default:
		t.Error("no pong before the next data frame")
	}

	// Close: the server answers with a close frame and Read returns io.EOF.
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye")
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("after close: %v, want close %d echoed", err, websocket.CloseGoingAway)
	}
	if err := s.end(t); err != io.EOF {
		t.Errorf("handler read ended with %v, want io.EOF", err)
	}
}

// TestWebSocketLargeAndFragmented sends fragmented messages (continuation
// frames) and frames with 16- and 64-bit lengths; the echo goes out in frames
// large enough for the server's vectored write path.
func TestWebSocketLargeAndFragmented(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0/mqtt"}, nil)
	c, _, err := wsDial(t, s.l, &websocket.Dialer{WriteBufferSize: 64}, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, n := range []int{1000, 70000, 200} {
		msg := make([]byte, n)
		rand.Read(msg)
		w, err := c.NextWriter(websocket.BinaryMessage)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(msg) // a 64-byte buffer makes this a run of fragments
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want = append(want, msg...)
	}
	big := make([]byte, 100000) // one frame with a 64-bit length
	rand.Read(big)
	c2, _, err := wsDial(t, s.l, nil, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.WriteMessage(websocket.BinaryMessage, big); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, c, len(want)); !bytes.Equal(got, want) {
		t.Fatal("fragmented echo differs")
	}
	if got := readN(t, c2, len(big)); !bytes.Equal(got, big) {
		t.Fatal("large echo differs")
	}
}

func TestWebSocketSubprotocols(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0"}, nil)
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"mqttv3.1"}, "mqttv3.1"},
		{[]string{"mqttv3.1", "mqtt"}, "mqtt"},
		{[]string{"wamp", "mqtt"}, "mqtt"},
		{nil, ""},
	} {
		c, _, err := wsDial(t, s.l, nil, tc.offer...)
		if err != nil {
			t.Fatalf("offer %q: %v", tc.offer, err)
		}
		if c.Subprotocol() != tc.want {
			t.Errorf("offer %q: got %q, want %q", tc.offer, c.Subprotocol(), tc.want)
		}
		c.Close()
	}
	_, resp, err := wsDial(t, s.l, nil, "wamp")
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("offer wamp: %v, %v; want 400", err, resp)
	}
}

func TestWSS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "wss://127.0.0.1:0/mqtt", TLS: p.tlsConfig("require", true)}, nil)
	if !strings.HasPrefix(s.l.URL(), "wss://127.0.0.1:") || !strings.HasSuffix(s.l.URL(), "/mqtt") {
		t.Errorf("URL() = %q", s.l.URL())
	}
	c, _, err := wsDial(t, s.l, &websocket.Dialer{TLSClientConfig: p.clientConfig(p.client)}, "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789"), 5000)
	c.WriteMessage(websocket.BinaryMessage, []byte("\xc0\x00"))
	c.WriteMessage(websocket.BinaryMessage, big)
	if got := readN(t, c, 2+len(big)); !bytes.Equal(got, append([]byte("\xc0\x00"), big...)) {
		t.Fatal("echo differs")
	}
	a := s.next(t)
	if a.info.Scheme != SchemeWSS || a.info.TLS == nil || a.info.TLS.PeerCertificates[0].Subject.CommonName != "device-42" {
		t.Errorf("info = %+v", a.info)
	}
	if _, _, err := wsDial(t, s.l, &websocket.Dialer{TLSClientConfig: p.clientConfig()}, "mqtt"); err == nil {
		t.Error("wss client without a certificate was served")
	}
}

// rawRequest sends an HTTP request to l and returns the response.
func rawRequest(t *testing.T, l *Listener, req string) *http.Response {
	t.Helper()
	c := dial(t, l)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp
}

func upgradeRequest(path string, mutate func(h http.Header)) string {
	h := http.Header{
		"Host":                   {"example.com"},
		"Upgrade":                {"websocket"},
		"Connection":             {"keep-alive, Upgrade"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Protocol": {"mqtt"},
	}
	if mutate != nil {
		mutate(h)
	}
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\n")
	h.Write(&b)
	b.WriteString("\r\n")
	return b.String()
}

func TestWebSocketHandshakeFailures(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0/mqtt"}, nil)
	for _, tc := range []struct {
		name   string
		req    string
		status int
		header string // a header the response must carry, "Name: value"
	}{
		{"wrong path", upgradeRequest("/other", nil), 404, ""},
		{"missing upgrade", upgradeRequest("/mqtt", func(h http.Header) { h.Del("Upgrade") }), 400, ""},
		{"upgrade to h2c", upgradeRequest("/mqtt", func(h http.Header) { h.Set("Upgrade", "h2c") }), 400, ""},
		{"missing connection upgrade", upgradeRequest("/mqtt", func(h http.Header) { h.Set("Connection", "keep-alive") }), 400, ""},
		{"bad version", upgradeRequest("/mqtt", func(h http.Header) { h.Set("Sec-WebSocket-Version", "8") }), 426, "Sec-Websocket-Version: 13"},
		{"missing version", upgradeRequest("/mqtt", func(h http.Header) { h.Del("Sec-WebSocket-Version") }), 426, "Sec-Websocket-Version: 13"},
		{"bad key", upgradeRequest("/mqtt", func(h http.Header) { h.Set("Sec-WebSocket-Key", "c2hvcnQ=") }), 400, ""},
		{"missing host", upgradeRequest("/mqtt", func(h http.Header) { h.Del("Host") }), 400, ""},
		{"wrong subprotocol", upgradeRequest("/mqtt", func(h http.Header) { h.Set("Sec-WebSocket-Protocol", "chat") }), 400, ""},
		{"POST", strings.Replace(upgradeRequest("/mqtt", nil), "GET", "POST", 1), 405, "Allow: GET"},
		{"HTTP/1.0", strings.Replace(upgradeRequest("/mqtt", nil), "HTTP/1.1", "HTTP/1.0", 1), 400, ""},
		{"malformed header", strings.Replace(upgradeRequest("/mqtt", nil), "Host:", "Host", 1), 400, ""},
		{"too large", upgradeRequest("/mqtt", func(h http.Header) { h.Set("X-Big", strings.Repeat("a", 5000)) }), 431, ""},
	} {
		resp := rawRequest(t, s.l, tc.req)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if name, value, ok := strings.Cut(tc.header, ": "); ok && resp.Header.Get(name) != value {
			t.Errorf("%s: %s = %q, want %q", tc.name, name, resp.Header.Get(name), value)
		}
	}
	select {
	case a := <-s.accepted:
		t.Errorf("a failed handshake reached the handler: %+v", a.info)
	default:
	}
	// A good request with a query string, answered per RFC 6455 section 1.3.
	resp := rawRequest(t, s.l, upgradeRequest("/mqtt?client=1", nil))
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "mqtt" {
		t.Errorf("good request: %d %v", resp.StatusCode, resp.Header)
	}
}

// rawWS upgrades a plain connection by hand; early is sent in the same write
// as the request, before the server has answered.
func rawWS(t *testing.T, l *Listener, early []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dial(t, l)
	if _, err := c.Write(append([]byte(upgradeRequest("/mqtt", nil)), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c, br
}

// clientFrame encodes a client frame: masked unless mask is false.
func clientFrame(b0 byte, payload []byte, mask bool) []byte {
	f := []byte{b0, byte(len(payload))}
	if len(payload) > 125 {
		f[1] = 126
		f = binary.BigEndian.AppendUint16(f, uint16(len(payload)))
	}
	if !mask {
		return append(f, payload...)
	}
	f[1] |= 0x80
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f = append(f, key[:]...)
	for i, b := range payload {
		f = append(f, b^key[i%4])
	}
	return f
}

// readServerFrame reads one unmasked server frame.
func readServerFrame(t *testing.T, r io.Reader) (op byte, payload []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		t.Fatalf("frame header %x: want FIN and no mask", h)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(r, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(r, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, payload
}

func TestWebSocketRawFrames(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0"}, nil)

	// Frames sent with the request; a fragmented message with a ping in the middle.
	early := clientFrame(0x82, []byte("early"), true)
	c, br := rawWS(t, s.l, early)
	if op, p := readServerFrame(t, br); op != opBinary || string(p) != "early" {
		t.Fatalf("got op %d %q", op, p)
	}
	msg := append(clientFrame(0x02, []byte("frag"), true), clientFrame(0x89, []byte("p"), true)...)
	msg = append(msg, clientFrame(0x80, []byte("ment"), true)...)
	c.Write(msg)
	want := map[string]bool{"frag": true, "ment": true}
	sawPong := false
	for len(want) > 0 || !sawPong {
		op, p := readServerFrame(t, br)
		switch {
		case op == opPong && string(p) == "p":
			sawPong = true
		case op == opBinary && want[string(p)]:
			delete(want, string(p))
		default:
			t.Fatalf("unexpected frame op %d %q", op, p)
		}
	}
	c.Close()
	s.end(t)

	for _, tc := range []struct {
		name  string
		frame []byte
		code  uint16
	}{
		{"unmasked", clientFrame(0x82, []byte("x"), false), closeProtocol},
		{"text", clientFrame(0x81, []byte("x"), true), closeUnsupported},
		{"continuation first", clientFrame(0x80, []byte("x"), true), closeProtocol},
		{"binary inside fragments", append(clientFrame(0x02, []byte("x"), true), clientFrame(0x82, []byte("y"), true)...), closeProtocol},
		{"reserved bits", clientFrame(0xc2, []byte("x"), true), closeProtocol},
		{"unknown opcode", clientFrame(0x83, nil, true), closeProtocol},
		{"fragmented ping", clientFrame(0x09, nil, true), closeProtocol},
		{"long ping", clientFrame(0x89, make([]byte, 126), true), closeProtocol},
		{"one-byte close", clientFrame(0x88, []byte{3}, true), closeProtocol},
		{"empty close", clientFrame(0x88, nil, true), closeNormal},
	} {
		c, br := rawWS(t, s.l, nil)
		c.Write(tc.frame)
		var op byte
		var p []byte
		for op, p = readServerFrame(t, br); op == opBinary; op, p = readServerFrame(t, br) {
		}
		if op != opClose || len(p) != 2 || binary.BigEndian.Uint16(p) != tc.code {
			t.Errorf("%s: got op %d %x, want close %d", tc.name, op, p, tc.code)
		}
		// The server closes the socket next: EOF, or a reset when it left
		// the rest of a bad frame unread.
		if _, err := br.ReadByte(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: after close: %v, want EOF", tc.name, err)
		}
		if err := s.end(t); (tc.code == closeNormal) != (err == io.EOF) {
			t.Errorf("%s: handler ended with %v", tc.name, err)
		}
		c.Close()
	}
}

// TestWebSocketWriteAfterClose: once the conn has sent a close frame, writes
// fail instead of putting frames after it.
func TestWebSocketWriteAfterClose(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &wsConn{conn: a}
	go io.Copy(io.Discard, b)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("write after Close succeeded")
	}
	if n, err := c.WriteBuffers([][]byte{[]byte("a"), []byte("b")}); err == nil || n != 0 {
		t.Errorf("WriteBuffers after Close = %d, %v", n, err)
	}
}

func TestWebSocketWriteBuffers(t *testing.T) {
	for _, size := range []int{10, 200, 70000} {
		a, b := net.Pipe()
		c := &wsConn{conn: a}
		part := bytes.Repeat([]byte{'z'}, size)
		got := make(chan []byte, 1)
		go func() {
			_, p := readServerFrame(t, b)
			got <- p
		}()
		n, err := c.WriteBuffers([][]byte{[]byte("\x30\x05"), part, []byte("!")})
		if err != nil || n != size+3 {
			t.Fatalf("size %d: WriteBuffers = %d, %v", size, n, err)
		}
		if p := <-got; len(p) != size+3 || string(p[:2]) != "\x30\x05" || p[len(p)-1] != '!' {
			t.Errorf("size %d: frame payload of %d bytes", size, len(p))
		}
		a.Close()
		b.Close()
	}
}

// TestWebSocketSlowRequest: the upgrade request may arrive a byte at a time.
func TestWebSocketSlowRequest(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0"}, nil)
	c := dial(t, s.l)
	req := upgradeRequest("/mqtt", nil) + string(clientFrame(0x82, []byte("hi"), true))
	for i := range len(req) {
		if _, err := io.WriteString(c, req[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var got []byte
	for len(got) < 2 {
		op, p := readServerFrame(t, br) // the echo of each byte as it came
		if op != opBinary {
			t.Fatalf("got op %d %q", op, p)
		}
		got = append(got, p...)
	}
	if string(got) != "hi" {
		t.Fatalf("echo %q", got)
	}
	c.Close()
	s.end(t)
}
