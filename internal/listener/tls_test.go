package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testcert"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, all generated for the test.
type testPKI struct {
	dir      string
	caFile   string
	certFile string
	keyFile  string
	roots    *x509.CertPool
	client   tls.Certificate // CN device-42, signed by the CA
	stranger tls.Certificate // CN stranger, self-signed
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	ca := testcert.NewCA(t, "culex test CA")
	p := &testPKI{dir: t.TempDir(), roots: ca.Pool(),
		client: ca.Client(t, "device-42"), stranger: testcert.SelfSignedClient(t, "stranger")}
	p.caFile = ca.WriteFile(t, p.dir, "ca.pem")
	p.certFile, p.keyFile = testcert.WriteFiles(t, p.dir, "server", ca.Server(t, "127.0.0.1"))
	return p
}

// tlsConfig is the listener TLS config with the given client policy.
func (p *testPKI) tlsConfig(clientAuth string, withCA bool) config.TLS {
	c := config.TLS{CertFile: p.certFile, KeyFile: p.keyFile, ClientAuth: clientAuth}
	if withCA {
		c.ClientCAFile = p.caFile
	}
	return c
}

// clientConfig trusts the test CA and presents cert, if given, even when the
// server's list of acceptable CAs does not name its issuer.
func (p *testPKI) clientConfig(cert ...tls.Certificate) *tls.Config {
	conf := &tls.Config{RootCAs: p.roots, ServerName: "127.0.0.1"}
	if len(cert) > 0 {
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
	}
	return conf
}

// dialTLS connects and completes the handshake and one echo, or returns the
// error the client saw.
func dialTLS(t *testing.T, l *Listener, conf *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), conf)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// With TLS 1.3 a refused client certificate shows on the first read.
	if _, err := c.Write([]byte("ping")); err != nil {
		return nil, err
	}
	got := make([]byte, 4)
	if _, err := c.Read(got); err != nil {
		return nil, err
	}
	return c, nil
}

func TestTLSEcho(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, nil)
	if !strings.HasPrefix(s.l.URL(), "ssl://127.0.0.1:") {
		t.Errorf("URL() = %q", s.l.URL())
	}
	c, err := dialTLS(t, s.l, p.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "\xc0\x00")
	a := s.next(t)
	if _, ok := a.conn.(*tls13Conn); !ok {
		t.Errorf("conn is %T, want *tls13Conn (TLS 1.3 on the listener's record layer)", a.conn)
	}
	if a.info.Scheme != SchemeSSL || a.info.TLS == nil || !a.info.TLS.HandshakeComplete {
		t.Fatalf("info = %+v, want ssl with a completed TLS state", a.info)
	}
	if len(a.info.TLS.PeerCertificates) != 0 {
		t.Errorf("peer certificates without client auth: %d", len(a.info.TLS.PeerCertificates))
	}
	c.Close()
	s.end(t)
}

// TestTLS12Echo: a TLS 1.2 client is served by crypto/tls's Conn.
func TestTLS12Echo(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, nil)
	conf := p.clientConfig()
	conf.MaxVersion = tls.VersionTLS12
	c, err := dialTLS(t, s.l, conf)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "\xc0\x00")
	a := s.next(t)
	if _, ok := a.conn.(*tls.Conn); !ok {
		t.Errorf("conn is %T, want *tls.Conn", a.conn)
	}
	if a.info.TLS == nil || a.info.TLS.Version != tls.VersionTLS12 {
		t.Errorf("info.TLS = %+v, want TLS 1.2", a.info.TLS)
	}
	c.Close()
	s.end(t)
}

func TestTLSMinVersion12(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("none", true)}, nil)
	conf := p.clientConfig()
	conf.MinVersion, conf.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := dialTLS(t, s.l, conf); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestTLSClientCertRequire(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("require", true)}, nil)
	if _, err := dialTLS(t, s.l, p.clientConfig()); err == nil {
		t.Error("client without a certificate was served")
	}
	if _, err := dialTLS(t, s.l, p.clientConfig(p.stranger)); err == nil {
		t.Error("client with an unknown certificate was served")
	}
	if _, err := dialTLS(t, s.l, p.clientConfig(p.client)); err != nil {
		t.Fatalf("client with a CA-signed certificate: %v", err)
	}
	a := s.next(t)
	if a.info.TLS == nil || len(a.info.TLS.PeerCertificates) == 0 {
		t.Fatalf("no peer certificate in %+v", a.info)
	}
	if cn := a.info.TLS.PeerCertificates[0].Subject.CommonName; cn != "device-42" {
		t.Errorf("peer CN = %q, want device-42", cn)
	}
	if len(a.info.TLS.VerifiedChains) == 0 {
		t.Error("peer certificate not verified")
	}
}

func TestTLSClientCertRequest(t *testing.T) {
	p := newPKI(t)
	// With a CA: a certificate is optional but must verify when given.
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("request", true)}, nil)
	if _, err := dialTLS(t, s.l, p.clientConfig()); err != nil {
		t.Errorf("client without a certificate: %v", err)
	}
	if a := s.next(t); len(a.info.TLS.PeerCertificates) != 0 {
		t.Error("peer certificates from a client that sent none")
	}
	if _, err := dialTLS(t, s.l, p.clientConfig(p.stranger)); err == nil {
		t.Error("client with an unknown certificate was served")
	}
	if _, err := dialTLS(t, s.l, p.clientConfig(p.client)); err != nil {
		t.Errorf("client with a CA-signed certificate: %v", err)
	}
	if a := s.next(t); len(a.info.TLS.PeerCertificates) != 1 || a.info.TLS.PeerCertificates[0].Subject.CommonName != "device-42" {
		t.Errorf("peer certificates = %v", a.info.TLS.PeerCertificates)
	}

	// Without a CA: any certificate is taken, unverified, for auth to judge.
	s = startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("request", false)}, nil)
	if _, err := dialTLS(t, s.l, p.clientConfig(p.stranger)); err != nil {
		t.Fatalf("client with a self-signed certificate: %v", err)
	}
	if a := s.next(t); len(a.info.TLS.PeerCertificates) != 1 || len(a.info.TLS.VerifiedChains) != 0 {
		t.Errorf("peer certificates %d, verified chains %d; want 1, 0", len(a.info.TLS.PeerCertificates), len(a.info.TLS.VerifiedChains))
	}
}

func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	garbage := filepath.Join(p.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := func(c net.Conn, _ ConnInfo) { c.Close() }
	for name, tc := range map[string]config.TLS{
		"require without CA": p.tlsConfig("require", false),
		"unknown auth":       p.tlsConfig("sometimes", true),
		"missing key":        {CertFile: p.certFile},
		"key mismatch":       {CertFile: p.certFile, KeyFile: p.caFile},
		"missing CA file":    {CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: filepath.Join(p.dir, "nope.pem")},
		"CA file not PEM":    {CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: garbage},
	} {
		for _, url := range []string{"ssl://127.0.0.1:0", "wss://127.0.0.1:0"} {
			l, err := New(config.Listener{URL: url, TLS: tc}, h, nil)
			if err == nil {
				l.Close()
				t.Errorf("%s on %s: New succeeded", name, url)
			} else if !strings.Contains(err.Error(), url) {
				t.Errorf("%s: error %q does not name %s", name, err, url)
			}
		}
	}
}

// TestTLSTicketOverOneRecord: with client_auth the session ticket carries
// the client's certificate chain; a chain of about 20 KB makes the
// NewSessionTicket message longer than one record, and the server's
// records after it must still use the right sequence numbers.
func TestTLSTicketOverOneRecord(t *testing.T) {
	p := newPKI(t)
	ca := testcert.NewCA(t, "big chain CA")
	caFile := ca.WriteFile(t, p.dir, "big-ca.pem")
	names := make([]string, 400)
	for i := range names {
		names[i] = fmt.Sprintf("device-%04d.a-rather-long-subdomain.example.com", i)
	}
	big := ca.Client(t, "device-big", names...)
	if n := len(big.Certificate[0]); n < 17<<10 {
		t.Fatalf("client certificate is %d bytes, want over 17 KiB", n)
	}
	for _, auth := range []string{"require", "request"} {
		t.Run(auth, func(t *testing.T) {
			cfg := p.tlsConfig(auth, true)
			cfg.ClientCAFile = caFile
			s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: cfg}, nil)
			conf := p.clientConfig(big)
			conf.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			c, err := dialTLS(t, s.l, conf) // the echo reads the ticket
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, strings.Repeat("x", 40<<10))
			a := s.next(t)
			if _, ok := a.conn.(*tls13Conn); !ok {
				t.Errorf("conn is %T, want *tls13Conn", a.conn)
			}
			c.Close()
			// The ticket resumes, and the resumed connection works too.
			c, err = dialTLS(t, s.l, conf)
			if err != nil {
				t.Fatal(err)
			}
			if !c.ConnectionState().DidResume {
				t.Error("the 20 KB ticket did not resume")
			}
			roundTrip(t, c, "after resumption")
		})
	}
}

// TestTicketRecordsFraming: the records of a ticket are counted back from
// the last one written; framing that does not add up to the ticket's
// length says to keep crypto/tls's Conn.
func TestTicketRecordsFraming(t *testing.T) {
	rec := func(body int) int { return body + 1 + aeadOverhead }
	for _, tc := range []struct {
		name    string
		written []int
		msgLen  int
		n       uint64
		ok      bool
	}{
		{"no ticket", []int{90, 53}, 0, 0, true},
		{"one record", []int{90, rec(300)}, 300, 1, true},
		{"two records", []int{90, rec(maxPlaintext), rec(4000)}, maxPlaintext + 4000, 2, true},
		{"padded record", []int{90, rec(300) + 10}, 300, 0, false},
		{"fewer bytes than the ticket", []int{rec(100)}, 300, 0, false},
		{"record over the limit", []int{rec(maxPlaintext + 1)}, maxPlaintext + 1, 0, false},
	} {
		r := &recordReader{written: tc.written}
		if n, ok := r.ticketRecords(tc.msgLen); n != tc.n || ok != tc.ok {
			t.Errorf("%s: ticketRecords = %d, %v; want %d, %v", tc.name, n, ok, tc.n, tc.ok)
		}
	}
}
