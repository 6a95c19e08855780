package integration

import (
	"crypto/tls"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/culexmq/culex/internal/testcert"
)

// haproxyPKI is the certificates of the TLS tests: a CA, the server
// certificate (127.0.0.1 and localhost) that Culex or HAProxy presents, and
// a client certificate per device.
type haproxyPKI struct {
	ca                  *testcert.CA
	dir                 string
	caFile              string
	serverCert, servKey string
}

func newHAProxyPKI(t *testing.T) *haproxyPKI {
	p := &haproxyPKI{ca: testcert.NewCA(t, "culex haproxy test CA"), dir: t.TempDir()}
	p.caFile = p.ca.WriteFile(t, p.dir, "ca.pem")
	p.serverCert, p.servKey = testcert.WriteFiles(t, p.dir, "server", p.ca.Server(t, "culex"))
	return p
}

// client issues the client certificate named cn and writes its files.
func (p *haproxyPKI) client(t *testing.T, cn string) (cert tls.Certificate, certFile, keyFile string) {
	cert = p.ca.Client(t, cn)
	certFile, keyFile = testcert.WriteFiles(t, p.dir, cn, cert)
	return cert, certFile, keyFile
}

// combinedPEM writes the server certificate and its key into one file, as
// HAProxy's "crt" wants them.
func (p *haproxyPKI) combinedPEM(t *testing.T) string {
	var b []byte
	for _, f := range []string{p.serverCert, p.servKey} {
		c, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, c...)
	}
	path := filepath.Join(p.dir, "culex.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsDevice connects a Paho v3 device over TLS to addr from the loopback
// address local, verifying the server certificate against the test CA and
// the name serverName; certs is its client certificate, if any.
func tlsDevice(t *testing.T, p *haproxyPKI, addr, local, id, serverName string, certs ...tls.Certificate) (*v3Client, error) {
	return dialV3(t, "ssl://"+addr, id, true, func(o *mqtt.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: p.ca.Pool(), ServerName: serverName, Certificates: certs})
		o.SetDialer(&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}})
	})
}

// checkLogin fails unless the node's last login of id came from the
// address local and carried the client certificate name cn ("" for none).
func checkLogin(t *testing.T, hook *loginHook, id, local, cn string) {
	t.Helper()
	l := hook.last(t, id)
	if host, _, _ := net.SplitHostPort(l.peer); host != local {
		t.Errorf("%s: the node saw %s, want the device's own address %s (PROXY v2)", id, l.peer, local)
	}
	if l.certCN != cn {
		t.Errorf("%s: the node saw client certificate %q, want %q", id, l.certCN, cn)
	}
}

// TestHAProxyTLSPassthrough runs the shipped haproxy.cfg's 8883 frontend,
// which passes TLS through to Culex, in front of a node whose ssl://
// listener reads PROXY v2 and requires client certificates:
//   - Paho and mosquitto_pub (--cafile, no --insecure) devices verify the
//     node's certificate and name through HAProxy, and a device expecting
//     another name is refused by its own check;
//   - the node sees each device's own address (the PROXY header comes
//     before the TLS handshake) and its client certificate (mTLS end to
//     end), and refuses a device without one;
//   - messages flow between the devices.
func TestHAProxyTLSPassthrough(t *testing.T) {
	pki := newHAProxyPKI(t)
	hook := newLoginHook(t)
	q := url.Values{"proxy_protocol": {"true"}, "trusted_proxies": {"127.0.0.0/8"},
		"cert_file": {pki.serverCert}, "key_file": {pki.servKey},
		"client_ca_file": {pki.caFile}, "client_auth": {"require"}}
	node := startHAProxyNode(t, 1, hook, nil, "--listen", "ssl://127.0.0.2:0?"+q.Encode())
	if node.tls == "" {
		t.Fatal("the node logged no ssl:// listener")
	}
	if node.adminPort == 0 {
		t.Fatal("culex has no admin listener: no /readyz to check")
	}
	hp := startHAProxyCfgFile(t, []haproxyNode{node}, "")
	front := hp.front["8883"]
	_, port, _ := net.SplitHostPort(front)

	subCert, _, _ := pki.client(t, "device-sub")
	sub, err := tlsDevice(t, pki, front, "127.0.1.1", "sub", "localhost", subCert)
	if err != nil {
		t.Fatalf("Paho over TLS through HAProxy: %v", err)
	}
	checkLogin(t, hook, "sub", "127.0.1.1", "device-sub")
	sub.subscribe("sec/#", 1)

	_, certFile, keyFile := pki.client(t, "device-mosq")
	mosquittoPub(t, "localhost:"+port, "-A", "127.0.1.2", "--cafile", pki.caFile,
		"--cert", certFile, "--key", keyFile, "-i", "mosq", "-q", "1", "-t", "sec/mosq", "-m", "passed through")
	if m := recv1(t, sub.msgs); string(m.Payload) != "passed through" {
		t.Fatalf("got %q, want the mosquitto_pub message", m.Payload)
	}
	checkLogin(t, hook, "mosq", "127.0.1.2", "device-mosq")

	// The certificate the devices verified is the node's: one expecting
	// another name refuses it.
	if _, err := tlsDevice(t, pki, front, "127.0.1.3", "misnamed", "wrong.example", subCert); err == nil ||
		!strings.Contains(err.Error(), "wrong.example") {
		t.Errorf("a device expecting wrong.example got %v, want a certificate name error", err)
	}
	// The node, not HAProxy, asks for the client certificate.
	if _, err := tlsDevice(t, pki, front, "127.0.1.4", "nocert", "localhost"); err == nil {
		t.Error("a device without a client certificate connected to a client_auth: require listener through HAProxy")
	}
	// The marker: a device connecting after both refusals still gets in,
	// and the node never saw the refused ones log in.
	if _, err := tlsDevice(t, pki, front, "127.0.1.5", "after", "localhost", subCert); err != nil {
		t.Fatal(err)
	}
	checkLogin(t, hook, "after", "127.0.1.5", "device-sub")
	hook.mu.Lock()
	defer hook.mu.Unlock()
	for _, id := range []string{"misnamed", "nocert"} {
		if len(hook.by[id]) != 0 {
			t.Errorf("%s logged in at the node: %+v", id, hook.by[id])
		}
	}
}

// TestHAProxyTLSTerminated runs the shipped haproxy.cfg with TLS
// terminated at HAProxy (the passthrough pair left out and the
// mqtt_tls_terminated frontend uncommented, as docs/deploy.md says): Paho
// and mosquitto_pub devices verify HAProxy's certificate and name, HAProxy
// sends plain MQTT with PROXY v2 to the node's 1883 listener, and the
// node sees each device's own address. It then adds what an operator
// might try to carry the client identity, "verify required" and
// send-proxy-v2-ssl-cn: the node accepts the header's SSL TLVs but takes
// no identity from them (the login carries no certificate name):
// client-certificate authentication needs passthrough.
func TestHAProxyTLSTerminated(t *testing.T) {
	pki := newHAProxyPKI(t)
	hook := newLoginHook(t)
	node := startHAProxyNode(t, 1, hook, nil)
	if node.adminPort == 0 {
		t.Fatal("culex has no admin listener: no /readyz to check")
	}
	pem := pki.combinedPEM(t)
	hp := startHAProxyCfgFile(t, []haproxyNode{node}, pem)
	front := hp.front["8883"]
	_, port, _ := net.SplitHostPort(front)

	sub, err := tlsDevice(t, pki, front, "127.0.2.1", "sub", "localhost")
	if err != nil {
		t.Fatalf("Paho over TLS terminated at HAProxy: %v", err)
	}
	checkLogin(t, hook, "sub", "127.0.2.1", "")
	sub.subscribe("sec/#", 1)
	mosquittoPub(t, "localhost:"+port, "-A", "127.0.2.2", "--cafile", pki.caFile,
		"-i", "mosq", "-q", "1", "-t", "sec/mosq", "-m", "terminated")
	if m := recv1(t, sub.msgs); string(m.Payload) != "terminated" {
		t.Fatalf("got %q, want the mosquitto_pub message", m.Payload)
	}
	checkLogin(t, hook, "mosq", "127.0.2.2", "")
	if _, err := tlsDevice(t, pki, front, "127.0.2.3", "misnamed", "wrong.example"); err == nil ||
		!strings.Contains(err.Error(), "wrong.example") {
		t.Errorf("a device expecting wrong.example got %v, want a certificate name error", err)
	}

	// HAProxy verifies the client certificate and sends its CN in the
	// PROXY v2 header; the node takes no identity from it.
	hp2 := startHAProxyCfgFile(t, []haproxyNode{node}, pem, func(line string) string {
		line = strings.Replace(line, " send-proxy-v2 ", " send-proxy-v2-ssl-cn ", 1)
		if strings.Contains(line, "ssl crt") {
			line += " verify required ca-file " + pki.caFile
		}
		return line
	})
	cert, _, _ := pki.client(t, "device-cn")
	if _, err := tlsDevice(t, pki, hp2.front["8883"], "127.0.2.4", "with-cn", "localhost", cert); err != nil {
		t.Fatalf("device with a client certificate, PROXY v2 with SSL TLVs: %v", err)
	}
	checkLogin(t, hook, "with-cn", "127.0.2.4", "")
}

// startHAProxyCfgFile starts the shipped haproxy.cfg with HTTP checks and
// waits until the node is UP in the 8883 frontend's backend. With
// terminatePEM it first switches 8883 to TLS terminated at HAProxy as
// docs/deploy.md describes (the passthrough pair out, the
// mqtt_tls_terminated frontend in, its certificate at terminatePEM); edits
// then change each line of the result.
func startHAProxyCfgFile(t *testing.T, nodes []haproxyNode, terminatePEM string, edits ...func(string) string) *haproxyRun {
	src, err := os.ReadFile(shippedHAProxyCfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, backend := string(src), "culex_mqtt_tls"
	if terminatePEM != "" {
		cfg, backend = terminatedCfg(t, cfg, terminatePEM), "culex_mqtt"
	}
	lines := strings.Split(cfg, "\n")
	for i := range lines {
		for _, e := range edits {
			lines[i] = e(lines[i])
		}
	}
	hp := startHAProxyCfg(t, nodes, true, strings.Join(lines, "\n"))
	if hp.front["8883"] == "" {
		t.Fatal("the configuration binds no 8883")
	}
	waitFor(t, 3*waitTimeout, "culex1 UP in HAProxy's "+backend, func() bool {
		return hp.status(t, backend)["culex1"] == "UP"
	})
	return hp
}

// terminatedCfg is the shipped configuration switched to TLS terminated at
// HAProxy: the frontend mqtt_tls and backend culex_mqtt_tls sections
// dropped, the commented-out frontend mqtt_tls_terminated uncommented and
// its certificate path replaced by pem.
func terminatedCfg(t *testing.T, src, pem string) string {
	var out []string
	dropping, uncommenting, dropped, uncommented := false, false, 0, 0
	for _, line := range strings.Split(src, "\n") {
		top := line != "" && line[0] != ' '
		switch {
		case line == "frontend mqtt_tls" || line == "backend culex_mqtt_tls":
			dropping = true
			dropped++
			continue
		case dropping && !top:
			continue
		case line == "#frontend mqtt_tls_terminated":
			uncommenting = true
		case uncommenting && !strings.HasPrefix(line, "#    "):
			uncommenting = false
		}
		dropping = false
		if uncommenting {
			line = strings.Replace(strings.TrimPrefix(line, "#"), "/etc/haproxy/certs/culex.pem", pem, 1)
			uncommented++
		}
		out = append(out, line)
	}
	if dropped != 2 || uncommented < 2 || !strings.Contains(strings.Join(out, "\n"), "ssl crt "+pem) {
		t.Fatalf("the shipped config no longer has the passthrough pair and a commented-out mqtt_tls_terminated frontend with crt /etc/haproxy/certs/culex.pem (dropped %d sections, uncommented %d lines)",
			dropped, uncommented)
	}
	return strings.Join(out, "\n")
}
