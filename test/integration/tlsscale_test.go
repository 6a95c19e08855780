package integration

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/testcert"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// sslListenerRE finds the ssl listener's URL in serve's log.
var sslListenerRE = regexp.MustCompile(`msg="?listening"?.*\burl="?(ssl://[^\s"]+)`)

// startCulexTLS runs `culex serve` with a TCP listener and an ssl listener
// whose query is q, and returns the process and the ssl listener's address.
func startCulexTLS(t *testing.T, q url.Values) (*culexProc, string) {
	t.Helper()
	p := startCulex(t, t.TempDir(), "--listen", "ssl://127.0.0.1:0?"+q.Encode())
	var addr string
	waitFor(t, waitTimeout, "the ssl listener's log line", func() bool {
		m := sslListenerRE.FindStringSubmatch(p.stderr.String())
		if m != nil {
			addr = strings.TrimPrefix(m[1], "ssl://")
		}
		return m != nil
	})
	return p, addr
}

// mqttOverTLS connects with conf, sends CONNECT and reads CONNACK (by
// which the client has read the server's session ticket), and returns the
// connection state.
func mqttOverTLS(t *testing.T, addr string, conf *tls.Config, id string) tls.ConnectionState {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitTimeout}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("tls dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitTimeout))
	b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: id, CleanStart: true, KeepAlive: 30}).Encode(nil, packet.V311)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", ack, err)
	}
	return c.ConnectionState()
}

// TestTLSResumptionAcrossNodes: two nodes with the same tls.ticket_secret
// resume each other's sessions (a device that reconnects to another node
// skips the full handshake); a node with another secret does not.
func TestTLSResumptionAcrossNodes(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	q := url.Values{"cert_file": {pki.serverCert}, "key_file": {pki.serverKey}, "ticket_secret": {"shared by the cluster"}}
	_, a := startCulexTLS(t, q)
	_, b := startCulexTLS(t, q)
	q.Set("ticket_secret", "another secret")
	_, c := startCulexTLS(t, q)

	conf := &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if st := mqttOverTLS(t, a, conf, "dev-1"); st.DidResume || st.Version != tls.VersionTLS13 {
		t.Fatalf("first connection: resumed %v, version %#x", st.DidResume, st.Version)
	}
	if st := mqttOverTLS(t, b, conf, "dev-1"); !st.DidResume {
		t.Errorf("node B did not resume node A's session (same ticket_secret)")
	}
	if st := mqttOverTLS(t, a, conf, "dev-1"); !st.DidResume {
		t.Errorf("node A did not resume node B's session (same ticket_secret)")
	}
	if st := mqttOverTLS(t, c, conf, "dev-1"); st.DidResume {
		t.Errorf("node C resumed a session of a node with another ticket_secret")
	}
}

// TestTLSCertificateHotReload: a renewed certificate, put in place the way
// cert-manager does (a symlink swapped to a new directory), is served to
// new connections without a restart, while a connection made before keeps
// working; a pair that does not load is logged and the old one kept.
func TestTLSCertificateHotReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testcert.NewCA(t, "culex reload CA")
	pool := ca.Pool()
	write := func(name string) (serial *big.Int) {
		d := filepath.Join(dir, name)
		os.Mkdir(d, 0o755)
		cert := ca.Server(t, "server")
		testcert.WriteFiles(t, d, "tls", cert)
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber
	}
	swap := func(name string) { // ..data -> name, atomically
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first := write("v1")
	swap("v1")
	certFile, keyFile := filepath.Join(dir, "..data", "tls.pem"), filepath.Join(dir, "..data", "tls-key.pem")
	if _, err := os.Stat(certFile); err != nil {
		t.Fatalf("testcert.WriteFiles names: %v", err)
	}
	p, addr := startCulexTLS(t, url.Values{"cert_file": {certFile}, "key_file": {keyFile}, "reload_interval": {"50ms"}})
	conf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	served := func() *big.Int {
		return mqttOverTLS(t, addr, conf, fmt.Sprintf("probe-%d", time.Now().UnixNano())).PeerCertificates[0].SerialNumber
	}
	if s := served(); s.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", s, first)
	}
	old := connectV3(t, "ssl://"+addr, "old-conn", true, func(o *mqtt.ClientOptions) { o.SetTLSConfig(conf) })
	old.subscribe("reload/#", 1)

	second := write("v2")
	swap("v2")
	waitFor(t, waitTimeout, "the renewed certificate", func() bool { return served().Cmp(second) == 0 })

	// The connection made before the renewal still carries messages.
	pub := connectV3(t, "ssl://"+addr, "new-conn", true, func(o *mqtt.ClientOptions) { o.SetTLSConfig(conf) })
	pub.publish("reload/x", 1, false, "after renewal")
	if m := recv1(t, old.msgs); string(m.Payload) != "after renewal" {
		t.Errorf("old connection got %v", m)
	}

	// A broken renewal: the new directory's key does not match its cert.
	d3 := filepath.Join(dir, "v3")
	os.Mkdir(d3, 0o755)
	data, _ := os.ReadFile(filepath.Join(dir, "v1", "tls.pem"))
	os.WriteFile(filepath.Join(d3, "tls.pem"), data, 0o644)
	data, _ = os.ReadFile(filepath.Join(dir, "v2", "tls-key.pem"))
	os.WriteFile(filepath.Join(d3, "tls-key.pem"), data, 0o600)
	swap("v3")
	waitFor(t, waitTimeout, "the log line of the failed reload", func() bool {
		return strings.Contains(p.stderr.String(), "serving the old certificate")
	})
	if s := served(); s.Cmp(second) != 0 {
		t.Errorf("after a broken renewal the served serial is %v, want the previous %v", s, second)
	}
}
