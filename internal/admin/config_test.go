package admin_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testcert"
)

// TestConfigRedacted: the running config is shown with every password and
// URL credential replaced, the rest as configured.
func TestConfigRedacted(t *testing.T) {
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-secret"
		c.Kafka.SASL.Password = "sasl-secret"
		c.Kafka.Source.Password = "source-secret"
		c.Auth.HTTP.URL = "http://hook:hook-secret@127.0.0.1:9/auth"
		c.Kafka.Source.URL = "tcp://bridge:source-url-secret@127.0.0.1:1883"
		c.Listeners[0].TLS.TicketSecret = "ticket-secret-value"
		c.MQTT.MaxInflight = 77
	})
	a := adminClient(t, srv, "admin-pw-secret")
	_, body := a.call("GET", "/api/v1/config", nil)
	for _, s := range []string{"admin-pw-secret", "sasl-secret", "source-secret", "hook-secret", "source-url-secret", "ticket-secret-value"} {
		if strings.Contains(string(body), s) {
			t.Errorf("config shows %q: %s", s, body)
		}
	}
	var cfg struct {
		MQTT  map[string]any `json:"mqtt"`
		Admin map[string]any `json:"admin"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil || cfg.MQTT["max_inflight"] != float64(77) || cfg.Admin["default_password"] != "<redacted>" {
		t.Fatalf("config: %v %s", err, body)
	}
}

// TestSecureCookiesBehindProxy: without admin.tls the session cookie is
// Secure when admin.secure_cookies is always, or auto and a reverse proxy
// terminating HTTPS says so (X-Forwarded-Proto: https); not otherwise.
func TestSecureCookiesBehindProxy(t *testing.T) {
	login := func(srv interface{ AdminURL() string }, proto string) bool {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.AdminURL()+"/api/v1/login", strings.NewReader(`{"username":"admin","password":"admin-pw-1"}`))
		req.Header.Set("Content-Type", "application/json")
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cs := resp.Cookies()
		if resp.StatusCode != 200 || len(cs) != 1 {
			t.Fatalf("login: %s %+v", resp.Status, cs)
		}
		return cs[0].Secure
	}
	for _, c := range []struct {
		mode, proto string
		secure      bool
	}{
		{"always", "", true},
		{"auto", "https", true},
		{"auto", "", false},
		{"never", "https", false},
	} {
		srv := startNode(t, func(cfg *config.Config) {
			cfg.Admin.DefaultPassword = "admin-pw-1"
			cfg.Admin.SecureCookies = c.mode
		})
		if got := login(srv, c.proto); got != c.secure {
			t.Errorf("secure_cookies %s, X-Forwarded-Proto %q: Secure %v, want %v", c.mode, c.proto, got, c.secure)
		}
	}
}

// TestTLSSecureCookie: with admin.tls the listener speaks HTTPS and the
// session cookie is Secure, HttpOnly and SameSite=Strict.
func TestTLSSecureCookie(t *testing.T) {
	ca := testcert.NewCA(t, "admin-ca")
	certFile, keyFile := testcert.WriteFiles(t, t.TempDir(), "admin", ca.Server(t, "127.0.0.1"))
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-1"
		c.Admin.TLS = config.AdminTLS{CertFile: certFile, KeyFile: keyFile}
	})
	if !strings.HasPrefix(srv.AdminURL(), "https://") {
		t.Fatalf("url %s", srv.AdminURL())
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	resp, err := hc.Post(srv.AdminURL()+"/api/v1/login", "application/json", strings.NewReader(`{"username":"admin","password":"admin-pw-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if resp.StatusCode != 200 || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login over TLS: %s %+v", resp.Status, cs)
	}
	set := resp.Header.Get("Set-Cookie")
	if !strings.Contains(set, "Secure") || !strings.Contains(set, "SameSite=Strict") {
		t.Fatalf("Set-Cookie %q", set)
	}
}
