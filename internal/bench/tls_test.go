package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "culex bench test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644)
	return certFile, keyFile
}

// TestRunTLS runs over ssl:// and wss:// with the CA verified, and checks
// that an unverified certificate fails the handshake.
func TestRunTLS(t *testing.T) {
	dir := t.TempDir()
	// mosquitto running as root drops to its own user before loading keys.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cert, key := writeCert(t, dir)
	sslPort, wssPort := freePort(t), freePort(t)
	startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n"+
		"listener %d 127.0.0.1\nprotocol websockets\ncertfile %s\nkeyfile %s\n",
		sslPort, cert, key, wssPort, cert, key), sslPort, wssPort)
	for _, url := range []string{fmt.Sprintf("ssl://127.0.0.1:%d", sslPort), fmt.Sprintf("wss://127.0.0.1:%d", wssPort)} {
		tg, err := ParseTarget(url, TLSOptions{CAFile: cert}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, "run", url)
		cfg.Target = tg
		cfg.Pubs, cfg.Subs, cfg.Limit, cfg.QoS, cfg.SubQoS = 2, 1, 200, 1, 1
		s := runT(t, cfg)
		if s.Received != 200 || s.Lost != 0 || len(s.Errors) != 0 {
			t.Errorf("%s: received %d lost %d errors %v", url, s.Received, s.Lost, s.Errors)
		}
	}
	cfg := testConfig(t, "conn", fmt.Sprintf("ssl://127.0.0.1:%d", sslPort))
	cfg.Clients, cfg.Duration = 1, time.Millisecond
	if s := runT(t, cfg); s.Clients.Failed != 1 || len(s.Errors) != 1 {
		t.Errorf("unverified certificate: clients %+v errors %v", s.Clients, s.Errors)
	}
}
