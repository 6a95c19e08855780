package listener

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testlog"
)

// proxyV2 builds a v2 header: cmd is 0 (LOCAL) or 1 (PROXY); src and dst
// are both IPv4 or both IPv6 (or invalid for AF_UNSPEC); tlvs follow the
// addresses.
func proxyV2(cmd byte, src, dst netip.AddrPort, tlvs []byte) []byte {
	var fam byte
	var addrs []byte
	switch {
	case src.Addr().Is4():
		fam = 0x11
		addrs = append(addrs, src.Addr().AsSlice()...)
		addrs = append(addrs, dst.Addr().AsSlice()...)
	case src.Addr().Is6():
		fam = 0x21
		addrs = append(addrs, src.Addr().AsSlice()...)
		addrs = append(addrs, dst.Addr().AsSlice()...)
	}
	if fam != 0 {
		addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	}
	h := append([]byte{}, proxyV2Sig...)
	h = append(h, 0x20|cmd, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(addrs)+len(tlvs)))
	return append(append(h, addrs...), tlvs...)
}

var (
	src4 = netip.MustParseAddrPort("192.0.2.1:56324")
	dst4 = netip.MustParseAddrPort("198.51.100.7:1883")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:40000")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:8083")
	// tlvs: PP2_TYPE_ALPN "mqtt", PP2_TYPE_AUTHORITY "broker.example", a NOOP.
	tlvs = []byte("\x01\x00\x04mqtt\x02\x00\x0ebroker.example\x04\x00\x00")
)

// proxyCases are headers with the addresses they carry; a zero src means the
// real peer address stands.
var proxyCases = []struct {
	name     string
	header   []byte
	src, dst netip.AddrPort
}{
	{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 1883\r\n"), src4, dst4},
	{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 40000 8083\r\n"), src6, dst6},
	{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), netip.AddrPort{}, netip.AddrPort{}},
	{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n"), netip.AddrPort{}, netip.AddrPort{}},
	{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
	{"v2 TCP4", proxyV2(1, src4, dst4, nil), src4, dst4},
	{"v2 TCP6 with TLVs", proxyV2(1, src6, dst6, tlvs), src6, dst6},
	{"v2 LOCAL", proxyV2(0, netip.AddrPort{}, netip.AddrPort{}, nil), netip.AddrPort{}, netip.AddrPort{}},
	{"v2 LOCAL with addresses", proxyV2(0, src4, dst4, tlvs), netip.AddrPort{}, netip.AddrPort{}},
	{"v2 UNSPEC", proxyV2(1, netip.AddrPort{}, netip.AddrPort{}, tlvs), netip.AddrPort{}, netip.AddrPort{}},
	{"v2 UNIX", append(append(append([]byte{}, proxyV2Sig...), 0x21, 0x31, 0, 216), make([]byte, 216)...), netip.AddrPort{}, netip.AddrPort{}},
}

// TestReadProxyHeader: each header is parsed and consumed exactly.
func TestReadProxyHeader(t *testing.T) {
	for _, tc := range proxyCases {
		r := bytes.NewReader(append(append([]byte{}, tc.header...), "\x10MQTT"...))
		h, err := readProxyHeader(r)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if rest, _ := io.ReadAll(r); string(rest) != "\x10MQTT" {
			t.Errorf("%s: left %q, want the header consumed exactly", tc.name, rest)
		}
		checkProxyAddrs(t, tc.name, h.src, h.dst, tc.src, tc.dst)
	}
}

func checkProxyAddrs(t *testing.T, name string, src, dst net.Addr, wantSrc, wantDst netip.AddrPort) {
	t.Helper()
	if !wantSrc.IsValid() {
		if src != nil || dst != nil {
			t.Errorf("%s: addresses %v -> %v, want none", name, src, dst)
		}
		return
	}
	if src == nil || dst == nil {
		t.Errorf("%s: no addresses, want %v -> %v", name, wantSrc, wantDst)
		return
	}
	if src.(*net.TCPAddr).AddrPort() != wantSrc || dst.(*net.TCPAddr).AddrPort() != wantDst {
		t.Errorf("%s: addresses %v -> %v, want %v -> %v", name, src, dst, wantSrc, wantDst)
	}
}

func TestReadProxyHeaderRejects(t *testing.T) {
	v2 := proxyV2(1, src4, dst4, nil)
	for name, in := range map[string][]byte{
		"none":               []byte("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"),
		"short":              []byte("PROXY"),
		"lowercase":          []byte("proxy TCP4 192.0.2.1 198.51.100.7 56324 1883\r\n"),
		"v1 no CRLF":         []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 1883\n"),
		"v1 truncated":       []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 1883"),
		"v1 early LF":        []byte("PROXY TCP\n\r\n\r\n\r\n\r\n"),
		"v1 too long":        []byte("PROXY TCP6 " + strings.Repeat("f", 120) + "\r\n"),
		"v1 TCP5":            []byte("PROXY TCP5 192.0.2.1 198.51.100.7 56324 1883\r\n"),
		"v1 family mismatch": []byte("PROXY TCP4 2001:db8::1 2001:db8::2 40000 8083\r\n"),
		"v1 mapped v4 as 6":  []byte("PROXY TCP6 192.0.2.1 198.51.100.7 56324 1883\r\n"),
		"v1 bad port":        []byte("PROXY TCP4 192.0.2.1 198.51.100.7 65536 1883\r\n"),
		"v1 leading zero":    []byte("PROXY TCP4 192.0.2.1 198.51.100.7 056324 1883\r\n"),
		"v1 missing field":   []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324\r\n"),
		"v1 double space":    []byte("PROXY TCP4  192.0.2.1 198.51.100.7 56324 1883\r\n"),
		"v1 zone":            []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"),
		"v2 version 1":       append(append([]byte{}, v2[:12]...), append([]byte{0x11}, v2[13:]...)...),
		"v2 command 2":       append(append([]byte{}, v2[:12]...), append([]byte{0x22}, v2[13:]...)...),
		"v2 short length":    append(append([]byte{}, v2[:14]...), 0, 11),
		"v2 truncated":       v2[:20],
		"v2 truncated TLVs":  proxyV2(1, src6, dst6, tlvs)[:60],
	} {
		if h, err := readProxyHeader(bytes.NewReader(in)); err == nil {
			t.Errorf("%s: accepted as %v -> %v", name, h.src, h.dst)
		}
	}
}

// TestProxyProtocolTCP: behind a PROXY header a TCP client is still handed
// over as the raw *net.TCPConn, with the header's addresses.
func TestProxyProtocolTCP(t *testing.T) {
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: loopback}, nil)
	for _, tc := range proxyCases {
		c := dial(t, s.l)
		// Header and first packet in one write: the header must be consumed
		// exactly, leaving the packet to the handler.
		if _, err := c.Write(append(append([]byte{}, tc.header...), "\x10MQTT"...)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "\x10MQTT" {
			t.Fatalf("%s: echo %q, %v", tc.name, got, err)
		}
		a := s.next(t)
		if _, ok := a.conn.(*net.TCPConn); !ok {
			t.Errorf("%s: conn is %T, want *net.TCPConn", tc.name, a.conn)
		}
		if !tc.src.IsValid() {
			if a.info.Remote.String() != c.LocalAddr().String() {
				t.Errorf("%s: Remote %v, want the real peer %v", tc.name, a.info.Remote, c.LocalAddr())
			}
		} else {
			checkProxyAddrs(t, tc.name, a.info.Remote, a.info.Local, tc.src, tc.dst)
		}
		c.Close()
		s.end(t)
	}
}

// TestProxyProtocolRejects: a connection without a valid header is closed
// before the handler sees it.
func TestProxyProtocolRejects(t *testing.T) {
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: loopback}, nil)
	for _, in := range []string{
		"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
		"PROXY TCP4 nonsense\r\n",
		"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		c := dial(t, s.l)
		io.WriteString(c, in)
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%q: read %v, want the connection closed", in, err)
		}
	}
	select {
	case a := <-s.accepted:
		t.Errorf("handler got a connection with a bad header: %+v", a.info)
	default:
	}
}

// TestProxyProtocolWebSocket: the header comes before the HTTP upgrade.
func TestProxyProtocolWebSocket(t *testing.T) {
	s := startServer(t, config.Listener{URL: "ws://127.0.0.1:0/mqtt", ProxyProtocol: true, TrustedProxies: loopback}, nil)
	for _, tc := range proxyCases {
		d := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				_, err = c.Write(tc.header)
			}
			return c, err
		}}
		c, _, err := wsDial(t, s.l, d, "mqtt")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c.WriteMessage(websocket.BinaryMessage, []byte("\xc0\x00"))
		if got := readN(t, c, 2); string(got) != "\xc0\x00" {
			t.Fatalf("%s: echo %q", tc.name, got)
		}
		a := s.next(t)
		if !tc.src.IsValid() {
			if a.info.Remote.String() != c.LocalAddr().String() {
				t.Errorf("%s: Remote %v, want the real peer %v", tc.name, a.info.Remote, c.LocalAddr())
			}
		} else {
			checkProxyAddrs(t, tc.name, a.info.Remote, a.info.Local, tc.src, tc.dst)
		}
		c.Close()
		s.end(t)
	}
}

// TestProxyProtocolTLS: the header comes before the TLS handshake.
func TestProxyProtocolTLS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: loopback, TLS: p.tlsConfig("require", true)}, nil)
	raw := dial(t, s.l)
	raw.Write(proxyCases[1].header)
	c := tls.Client(raw, p.clientConfig(p.client))
	roundTrip(t, c, "hello")
	a := s.next(t)
	checkProxyAddrs(t, "ssl", a.info.Remote, a.info.Local, proxyCases[1].src, proxyCases[1].dst)
	if a.info.TLS == nil || a.info.TLS.PeerCertificates[0].Subject.CommonName != "device-42" {
		t.Errorf("info = %+v", a.info)
	}
	c.Close()
	s.end(t)
}

// loopback trusts the tests' own clients to send PROXY headers.
var loopback = []string{"127.0.0.1", "::1"}

// TestProxyProtocolUntrustedPeer: a PROXY header (v1 or v2) from a peer
// outside trusted_proxies is refused: the connection is closed before the
// handler sees it, counted, and warned about with the peer's address once
// per period however many come.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	var logs testlog.Buffer
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"192.0.2.0/24", "::1"}},
		func(l *Listener) { l.log = slog.New(slog.NewTextHandler(&logs, nil)) })
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 1883\r\n")},
		{"v2", proxyV2(1, src4, dst4, nil)},
	} {
		c := dial(t, s.l)
		c.Write(append(append([]byte{}, tc.header...), "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"...))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: read %v, want the connection closed", tc.name, err)
		}
	}
	select {
	case a := <-s.accepted:
		t.Errorf("handler got a connection from an untrusted peer: %+v", a.info)
	default:
	}
	if n := s.l.Stats().UntrustedPeers; n != 2 {
		t.Errorf("UntrustedPeers = %d, want 2", n)
	}
	out := logs.String()
	if n := strings.Count(out, "not in trusted_proxies"); n != 1 || !strings.Contains(out, "level=WARN") ||
		!strings.Contains(out, "remote=127.0.0.1:") {
		t.Errorf("want one WARN naming the peer for two refusals within %s, got:\n%s", untrustedLogEvery, out)
	}
}

// TestProxyProtocolTrustedForms: trusted_proxies entries are addresses or
// networks, IPv4-mapped forms included; a loopback client is served by
// exactly those that contain 127.0.0.1.
func TestProxyProtocolTrustedForms(t *testing.T) {
	for _, tc := range []struct {
		trusted []string
		served  bool
	}{
		{[]string{"127.0.0.1"}, true},
		{[]string{"10.0.0.0/8", "127.0.0.0/8"}, true},
		{[]string{"::ffff:127.0.0.1"}, true},
		{[]string{"::ffff:127.0.0.0/104"}, true},
		{[]string{"127.0.0.2"}, false},
		{[]string{"::1"}, false},
		{[]string{"192.0.2.0/24"}, false},
	} {
		s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: tc.trusted}, nil)
		c := dial(t, s.l)
		c.Write([]byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 1883\r\nhi"))
		got := make([]byte, 2)
		_, err := io.ReadFull(c, got)
		if served := err == nil && string(got) == "hi"; served != tc.served {
			t.Errorf("trusted %v: served %v (%q, %v), want %v", tc.trusted, served, got, err, tc.served)
		}
		if tc.served {
			c.Close()
			s.end(t)
		}
	}
}

// TestProxyProtocolNeedsTrustedProxies: a PROXY protocol listener trusts
// no one implicitly.
func TestProxyProtocolNeedsTrustedProxies(t *testing.T) {
	h := func(c net.Conn, _ ConnInfo) { c.Close() }
	for _, cfg := range []config.Listener{
		{URL: "tcp://127.0.0.1:0", ProxyProtocol: true},
		{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"10.0.0.300"}},
	} {
		if l, err := New(cfg, h, nil); err == nil || !strings.Contains(err.Error(), "trusted_proxies") {
			if l != nil {
				l.Close()
			}
			t.Errorf("New(%+v): %v, want an error naming trusted_proxies", cfg, err)
		}
	}
}
