package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// testPKI is a CA with a server certificate for 127.0.0.1/localhost and a
// client certificate, written as PEM files into a temp dir.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
	client                                               tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "culex test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string, pair tls.Certificate) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		certFile = writePEM(t, dir, name+".pem", "CERTIFICATE", der)
		keyFile = writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kder)
		pair, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile, pair
	}
	p.serverCert, p.serverKey, _ = issue("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey, p.client = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTLSAndSecureWebSocket proves the ssl:// and wss:// listeners carry
// MQTT for Paho v3 and mosquitto clients (with --cafile), and that with
// client_auth: require a client without a certificate is refused while one
// with a CA-signed certificate gets through.
func TestTLSAndSecureWebSocket(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	srv := startBroker(t, func(c *config.Config) {
		tc := config.TLS{CertFile: pki.serverCert, KeyFile: pki.serverKey}
		mtls := tc
		mtls.ClientCAFile, mtls.ClientAuth = pki.caFile, "require"
		c.Listeners = append(c.Listeners,
			config.Listener{URL: "ssl://127.0.0.1:0", TLS: tc},
			config.Listener{URL: "wss://127.0.0.1:0/mqtt", TLS: tc},
		)
		c.Listeners = append(c.Listeners, config.Listener{URL: "mqtts://127.0.0.1:0", TLS: mtls})
	})
	sslURL, wssURL := srv.URL("ssl"), srv.URL("wss")
	if sslURL == "" || wssURL == "" {
		t.Fatalf("ssl URL %q, wss URL %q", sslURL, wssURL)
	}
	withCA := func(o *mqtt.ClientOptions) { o.SetTLSConfig(&tls.Config{RootCAs: pki.pool}) }
	a := connectV3(t, sslURL, "ssl-a", true, withCA)
	b := connectV3(t, wssURL, "wss-b", true, withCA)
	a.subscribe("sec/#", 2)
	b.publish("sec/x", 2, false, "over wss")
	if m := recv1(t, a.msgs); string(m.Payload) != "over wss" || m.QoS != 2 {
		t.Errorf("ssl subscriber got %v", m)
	}

	sslAddr := hostPort(t, sslURL)
	mosquittoPub(t, sslAddr, "--cafile", pki.caFile, "--insecure", "-q", "1", "-t", "sec/mosq", "-m", "over tls")
	if m := recv1(t, a.msgs); string(m.Payload) != "over tls" {
		t.Errorf("ssl subscriber got %v from mosquitto_pub", m)
	}

	// The third listener requires a client certificate.
	var mtlsAddr string
	for _, l := range srv.Listeners() {
		if u := l.URL(); len(u) > 8 && u[:8] == "mqtts://" || (len(u) > 6 && u[:6] == "ssl://" && u != sslURL) {
			mtlsAddr = hostPort(t, u)
		}
	}
	if mtlsAddr == "" {
		t.Fatalf("no client-certificate listener among %d listeners", len(srv.Listeners()))
	}
	if conn, err := tls.Dial("tcp", mtlsAddr, &tls.Config{RootCAs: pki.pool}); err == nil {
		// TLS 1.3 reports a missing client certificate on the first read.
		conn.SetDeadline(time.Now().Add(waitTimeout))
		b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, ClientID: "nocert", CleanStart: true, KeepAlive: 30}).Encode(nil, packet.V311)
		conn.Write(b)
		if _, err := conn.Read(make([]byte, 4)); err == nil {
			t.Errorf("client without a certificate got an answer from a client_auth: require listener")
		}
		conn.Close()
	}
	c := connectV3(t, "ssl://"+mtlsAddr, "with-cert", true, func(o *mqtt.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}})
	})
	c.publish("sec/cert", 1, false, "with cert")
	if m := recv1(t, a.msgs); string(m.Payload) != "with cert" {
		t.Errorf("got %v", m)
	}
	mosquittoPub(t, mtlsAddr, "--cafile", pki.caFile, "--insecure", "--cert", pki.clientCert, "--key", pki.clientKey, "-t", "sec/mosq-cert", "-m", "mosquitto with cert")
	if m := recv1(t, a.msgs); string(m.Payload) != "mosquitto with cert" {
		t.Errorf("got %v", m)
	}
}

// TestProxyProtocolListener proves a proxy_protocol listener accepts MQTT
// after a PROXY v1 or v2 header and refuses a connection without one.
func TestProxyProtocolListener(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) {
		c.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0", ProxyProtocol: true}}
	})
	addr := tcpAddr(t, srv)

	v1 := dialRaw(t, addr, packet.V5)
	v1.sendBytes([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 56324 1883\r\n"))
	v1.mustConnect(rawConnect("behind-proxy-v1", true))

	v2 := dialRaw(t, addr, packet.V5)
	hdr := []byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
		0x21, 0x11, 0x00, 0x0c, // v2 PROXY, TCP over IPv4, 12 address bytes
		192, 0, 2, 1, 192, 0, 2, 2, 0xdc, 0x04, 0x07, 0x5b}
	v2.sendBytes(hdr)
	v2.mustConnect(rawConnect("behind-proxy-v2", true))

	bare := dialRaw(t, addr, packet.V5)
	bare.sendBytes(mustEncode(t, &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "bare", CleanStart: true, KeepAlive: 30}))
	res := bare.awaitClose(waitTimeout)
	if !res.closed || len(res.other) > 0 {
		t.Errorf("CONNECT without PROXY header on a proxy_protocol listener: closed=%v, received %v", res.closed, res.other)
	}
}

func mustEncode(t *testing.T, p packet.Packet) []byte {
	t.Helper()
	b, err := p.Encode(nil, packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
