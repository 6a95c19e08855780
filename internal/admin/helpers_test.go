package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

// startNode runs a node with a loopback MQTT listener and admin listener
// on port 0, its data in a temporary directory.
func startNode(t testing.TB, mutate func(*config.Config)) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}}
	cfg.Admin.Listen, cfg.Admin.ListenSet = "127.0.0.1:0", true
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// apiClient calls the admin API as a browser does (cookie jar, CSRF
// header once logged in) or as a script (key).
type apiClient struct {
	t    *testing.T
	base string
	hc   *http.Client
	csrf string
	key  string // ID:SECRET, sent as Bearer
}

func newClient(t *testing.T, base string) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

// call sends body (a string is sent as is, anything else as JSON) and
// returns the status and the answer.
func (c *apiClient) call(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// want calls and fails unless the status is status; it decodes the
// answer into out when out is not nil.
func (c *apiClient) want(status int, method, path string, body, out any) {
	c.t.Helper()
	got, data := c.call(method, path, body)
	if got != status {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, got, data, status)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

// wantError calls and checks the JSON error's status and code.
func (c *apiClient) wantError(status int, code, method, path string, body any) {
	c.t.Helper()
	got, data := c.call(method, path, body)
	var e struct{ Code, Message string }
	if err := json.Unmarshal(data, &e); got != status || err != nil || e.Code != code || e.Message == "" {
		c.t.Fatalf("%s %s: %d %s, want %d with code %q", method, path, got, data, status, code)
	}
}

type me struct {
	Username   string `json:"username"`
	Role       string `json:"role"`
	Auth       string `json:"auth"`
	MustChange bool   `json:"must_change_password"`
	CSRF       string `json:"csrf_token"`
}

// login logs c in and keeps the CSRF token.
func (c *apiClient) login(user, pw string) me {
	c.t.Helper()
	var m me
	c.want(http.StatusOK, "POST", "/api/v1/login", map[string]string{"username": user, "password": pw}, &m)
	c.csrf = m.CSRF
	return m
}

// adminClient logs in as admin with the node's default password.
func adminClient(t *testing.T, srv *server.Server, pw string) *apiClient {
	c := newClient(t, srv.AdminURL())
	c.login("admin", pw)
	return c
}

// poll retries cond until it holds or 20 s pass.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
}
