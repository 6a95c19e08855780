package integration

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/testcert"
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
	ca := testcert.NewCA(t, "culex test CA")
	p := &testPKI{pool: ca.Pool(), client: ca.Client(t, "client")}
	p.caFile = ca.WriteFile(t, dir, "ca.pem")
	p.serverCert, p.serverKey = testcert.WriteFiles(t, dir, "server", ca.Server(t, "server"))
	p.clientCert, p.clientKey = testcert.WriteFiles(t, dir, "client", p.client)
	return p
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
		c.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"}}}
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
