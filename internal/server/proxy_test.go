package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/testlog"
)

// peerHook is an auth webhook that allows every login and reports the peer
// address the node gave it: the address the broker sees for the client.
func peerHook(t *testing.T) (url string, peers <-chan string) {
	ch := make(chan string, 16)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Peer string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		ch <- body.Peer
		io.WriteString(w, `{"result":"allow"}`)
	}))
	t.Cleanup(ts.Close)
	return ts.URL, ch
}

// proxyNode starts a node whose one listener expects PROXY headers from
// trusted, with the webhook at hook as its only auth backend.
func proxyNode(t *testing.T, hook string, trusted ...string) (*Server, *testlog.Buffer) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: trusted}}
	cfg.Auth.Backends = "http"
	cfg.Auth.HTTP.URL = hook
	cfg.Auth.HTTP.CacheTTL = 0
	logs := &testlog.Buffer{}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return srv, logs
}

// proxyV2 is a PROXY protocol v2 header for TCP over IPv4.
func proxyV2(src, dst netip.AddrPort) []byte {
	h := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	h = append(h, src.Addr().AsSlice()...)
	h = append(h, dst.Addr().AsSlice()...)
	h = binary.BigEndian.AppendUint16(h, src.Port())
	return binary.BigEndian.AppendUint16(h, dst.Port())
}

// connectVia dials addr (from local, when given), writes header and a v5
// CONNECT for id, and returns the CONNACK, or the error that ended the
// connection instead.
func connectVia(t *testing.T, local, addr string, header []byte, id string) (*packet.Connack, error) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, CleanStart: true, ClientID: id,
		Username: "dev", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true}).Encode(slices.Clip(header), packet.V5)
	if _, err := conn.Write(b); err != nil {
		return nil, err
	}
	p, err := packet.ReadPacket(conn, packet.V5, 0)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: no answer and no close", id)
		}
		return nil, err
	}
	ca, ok := p.(*packet.Connack)
	if !ok {
		t.Fatalf("%s: got %v, want CONNACK", id, p)
	}
	return ca, nil
}

var (
	hdrV1 = []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 1883\r\n")
	hdrV2 = proxyV2(netip.MustParseAddrPort("198.51.100.9:40000"), netip.MustParseAddrPort("198.51.100.7:1883"))
)

// TestProxyProtocolTrustedPeer: from a trusted peer the PROXY header's
// source is the client's address for the whole node (here: the auth
// webhook's peer).
func TestProxyProtocolTrustedPeer(t *testing.T) {
	hook, peers := peerHook(t)
	srv, _ := proxyNode(t, hook, "127.0.0.1")
	addr := strings.TrimPrefix(srv.URL("tcp"), "tcp://")
	for _, tc := range []struct {
		name   string
		header []byte
		peer   string
	}{{"v1", hdrV1, "192.0.2.1:56324"}, {"v2", hdrV2, "198.51.100.9:40000"}} {
		ca, err := connectVia(t, "", addr, tc.header, "trusted-"+tc.name)
		if err != nil || ca.ReasonCode != 0 {
			t.Fatalf("%s: CONNACK %v, %v", tc.name, ca, err)
		}
		if p := <-peers; p != tc.peer {
			t.Errorf("%s: the node saw %s, want the header's %s", tc.name, p, tc.peer)
		}
	}
}

// TestProxyProtocolUntrustedPeer: a PROXY header from a peer outside
// trusted_proxies is refused (closed without CONNACK, before any login),
// counted, and logged as a warning naming the peer.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	hook, peers := peerHook(t)
	srv, logs := proxyNode(t, hook, "192.0.2.0/24", "::1")
	addr := strings.TrimPrefix(srv.URL("tcp"), "tcp://")
	for _, tc := range []struct {
		name   string
		header []byte
	}{{"v1", hdrV1}, {"v2", hdrV2}} {
		if ca, err := connectVia(t, "", addr, tc.header, "forged-"+tc.name); err == nil {
			t.Errorf("%s: a forged header from loopback got CONNACK 0x%02x", tc.name, ca.ReasonCode)
		}
	}
	select {
	case p := <-peers:
		t.Errorf("a refused connection reached auth as %s", p)
	default: // the refusal happens in the listener, before the close the client saw
	}
	if n := srv.Listeners()[0].Stats().UntrustedPeers; n != 2 {
		t.Errorf("UntrustedPeers = %d, want 2", n)
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "not in trusted_proxies") ||
		!strings.Contains(out, "remote=127.0.0.1:") {
		t.Errorf("no warning naming the peer in the log:\n%s", out)
	}
}

// TestStartupNoteWithoutProxyProtocol: a listener on all interfaces
// without PROXY protocol gets the one-line note about shared addresses, a
// warning under Kubernetes; a loopback-only node gets none.
func TestStartupNoteWithoutProxyProtocol(t *testing.T) {
	for _, tc := range []struct {
		url, k8s, level string
		note            bool
	}{{"tcp://127.0.0.1:0", "", "", false}, {"tcp://:0", "", "INFO", true}, {"tcp://:0", "10.96.0.1", "WARN", true}} {
		t.Setenv("KUBERNETES_SERVICE_HOST", tc.k8s)
		cfg := testConfig(t)
		cfg.Listeners = []config.Listener{{URL: tc.url}, {URL: "ws://127.0.0.1:0/mqtt"}}
		logs := &testlog.Buffer{}
		srv, err := New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		srv.Shutdown(context.Background())
		if n := strings.Count(logs.String(), "behind a load balancer"); n != map[bool]int{true: 1}[tc.note] ||
			tc.note && !strings.Contains(logs.String(), "level="+tc.level+" msg=\"listener without proxy_protocol") {
			t.Errorf("%s (k8s %q): %d notes, want note=%v at %s:\n%s", tc.url, tc.k8s, n, tc.note, tc.level, logs)
		}
	}
}

// TestHAProxySendProxyV2: HAProxy in front with send-proxy-v2, trusted by
// address: a client connecting to HAProxy from 127.0.0.2 is seen by the
// node as 127.0.0.2 with its own port, while the same client connecting
// straight to the node with a forged header is refused.
func TestHAProxySendProxyV2(t *testing.T) {
	haproxy := brokertest.Tool(t, "haproxy", "haproxy")
	hook, peers := peerHook(t)
	srv, _ := proxyNode(t, hook, "127.0.0.1")
	culexAddr := strings.TrimPrefix(srv.URL("tcp"), "tcp://")

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := front.(*net.TCPListener).File()
	front.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "haproxy.cfg")
	cfg := fmt.Sprintf(`defaults
	mode tcp
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend mqtt
	bind fd@3
	default_backend culex
backend culex
	server culex %s send-proxy-v2
`, culexAddr)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", cfgFile)
	cmd.ExtraFiles = []*os.File{f} // fd 3: HAProxy's listening socket, bound before it starts
	out := &testlog.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out)
		}
	})
	frontAddr := front.Addr().String()

	// The socket accepts from the start; HAProxy serves it once running.
	ca, err := connectVia(t, "127.0.0.2", frontAddr, nil, "via-haproxy")
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("through HAProxy: CONNACK %v, %v", ca, err)
	}
	if p := <-peers; !strings.HasPrefix(p, "127.0.0.2:") {
		t.Errorf("the node saw %s through HAProxy, want the client's 127.0.0.2", p)
	}
	if ca, err := connectVia(t, "127.0.0.2", culexAddr, hdrV2, "forged"); err == nil {
		t.Errorf("a forged header straight from 127.0.0.2 got CONNACK 0x%02x", ca.ReasonCode)
	}
}
