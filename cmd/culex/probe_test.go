package main

import (
	"crypto/tls"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/testcert"
)

// TestProbeAdminPath: `culex probe PATH` finds the admin listener as
// culex serve would (CULEX_ADMIN_LISTEN, a wildcard address probed on
// loopback), over HTTPS when admin.tls is set, trusting the certificate
// of admin.tls.cert_file and no other, and passes the query on.
func TestProbeAdminPath(t *testing.T) {
	var asked string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked = r.URL.RequestURI() })
	plain := httptest.NewServer(h)
	defer plain.Close()
	_, port, _ := net.SplitHostPort(plain.Listener.Addr().String())
	target, client, err := adminTarget("/readyz?scope=node", nil, []string{"CULEX_ADMIN_LISTEN=0.0.0.0:" + port})
	if err != nil || target != "http://127.0.0.1:"+port+"/readyz?scope=node" {
		t.Fatalf("plain: %s %v", target, err)
	}
	if resp, err := client.Get(target); err != nil || resp.StatusCode != 200 || asked != "/readyz?scope=node" {
		t.Fatalf("plain GET: %v %v, asked %q", resp, err, asked)
	}

	secure := httptest.NewTLSServer(h)
	defer secure.Close()
	_, port, _ = net.SplitHostPort(secure.Listener.Addr().String())
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o600)
	os.WriteFile(keyFile, []byte("unused by the probe"), 0o600)
	env := []string{"CULEX_ADMIN_LISTEN=0.0.0.0:" + port, "CULEX_ADMIN_TLS_CERT_FILE=" + certFile, "CULEX_ADMIN_TLS_KEY_FILE=" + keyFile}
	target, client, err = adminTarget("/readyz", nil, env)
	if err != nil || target != "https://127.0.0.1:"+port+"/readyz" {
		t.Fatalf("tls: %s %v", target, err)
	}
	if resp, err := client.Get(target); err != nil || resp.StatusCode != 200 {
		t.Fatalf("tls GET: %v %v", resp, err)
	}
	// Another certificate at that address is refused.
	other := httptest.NewUnstartedServer(h)
	other.TLS = &tls.Config{Certificates: []tls.Certificate{testcert.NewCA(t, "other").Server(t, "127.0.0.1")}}
	other.StartTLS()
	defer other.Close()
	_, otherPort, _ := net.SplitHostPort(other.Listener.Addr().String())
	if _, err := client.Get("https://127.0.0.1:" + otherPort + "/readyz"); err == nil || !strings.Contains(err.Error(), "does not present the certificate") {
		t.Errorf("a listener with another certificate: %v, want refused", err)
	}

	if _, _, err := adminTarget("/readyz", nil, []string{"CULEX_ADMIN_LISTEN="}); err == nil || !strings.Contains(err.Error(), "admin.listen is empty") {
		t.Errorf("no admin listener: %v", err)
	}
}
