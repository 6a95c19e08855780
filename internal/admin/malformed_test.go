package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/admin"
	"github.com/culexmq/culex/internal/config"
)

// bodyRoutes are the operations that read a body, with a path to call.
var bodyRoutes = []struct{ method, path string }{
	{"POST", "/api/v1/login"},
	{"POST", "/api/v1/me/password"},
	{"POST", "/api/v1/accounts"},
	{"PUT", "/api/v1/accounts/admin"},
	{"POST", "/api/v1/api-keys"},
	{"POST", "/api/v1/bans"},
	{"POST", "/api/v1/users"},
	{"PUT", "/api/v1/users/dev"},
}

var badBodies = []string{
	"", "{", "}", "[]", "null", `"str"`, "0", `{"unknown": 1}`, `{"username": 5}`, `{"role": ["admin"]}`,
	`{"a":1}{"b":2}`, "\xff\xfe\x00", `{"username": "\u0000", "password": "\u0000"}`,
	`{"kind": "address", "value": "::ffff:1.2.3.4/200"}`, `{"duration_seconds": 1e400}`,
	`{"username": "` + strings.Repeat("x", 70<<10) + `"}`, strings.Repeat("[", 10000),
}

// keyedNode starts a node with an admin API key and returns its handler.
func keyedNode(t testing.TB) (http.Handler, string) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	_, secret, err := srv.Admin().Accounts().NewKey("fuzz", "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	keys := srv.Admin().Accounts().Keys()
	return srv.Admin().Handler(), keys[0].ID + ":" + secret
}

// checkAnswer fails on a 5xx, or on an error that is not {code, message}
// or that shows Go internals.
func checkAnswer(t testing.TB, what string, rec *httptest.ResponseRecorder) {
	body := rec.Body.String()
	if rec.Code >= 500 {
		t.Fatalf("%s: %d %s", what, rec.Code, body)
	}
	if rec.Code < 400 {
		return
	}
	var e map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["code"] == "" || e["message"] == "" || len(e) != 2 {
		t.Fatalf("%s: %d, not a JSON error: %q", what, rec.Code, body)
	}
	for _, leak := range []string{"goroutine", "panic", ".go:", "runtime.", "*admin.", "main."} {
		if strings.Contains(body, leak) {
			t.Fatalf("%s: answer shows internals: %q", what, body)
		}
	}
}

func serve(h http.Handler, key, method, path, ctype, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.1:1234"
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestMalformedRequests: bad bodies, content types, paths and parameters
// get a 4xx JSON error, never a crash or a 500.
func TestMalformedRequests(t *testing.T) {
	h, key := keyedNode(t)
	for _, rt := range bodyRoutes {
		for _, b := range badBodies {
			rec := serve(h, key, rt.method, rt.path, "application/json", b)
			checkAnswer(t, rt.method+" "+rt.path+" "+trunc(b), rec)
			if rec.Code < 400 {
				t.Errorf("%s %s %q: %d, want an error", rt.method, rt.path, trunc(b), rec.Code)
			}
		}
		rec := serve(h, key, rt.method, rt.path, "text/plain", `{}`)
		if checkAnswer(t, rt.path+" text/plain", rec); rec.Code != http.StatusUnsupportedMediaType && rt.path != "/api/v1/me/password" {
			t.Errorf("%s text/plain: %d", rt.path, rec.Code)
		}
	}
	for _, p := range []string{"/api/v1/clients/%00", "/api/v1/retained/%ff", "/api/v1/retained/a%2F%2B", "/api/v1/bans/x/y",
		"/api/v1/clients?page=-1", "/api/v1/clients?limit=99999999999999999999", "/api/v1/clients?connected=maybe",
		"/api/v1/retained?topic=%23%2Fa", "/api/v1/nodes/nope", "/api/v1/nothing", "/api/v2/clients", "/api/v1/kafka/held?page=x"} {
		for _, m := range []string{"GET", "DELETE", "POST", "PUT", "PATCH"} {
			checkAnswer(t, m+" "+p, serve(h, key, m, p, "", ""))
		}
	}
	if got := serve(h, key, "GET", "/api/v1/nothing", "", ""); got.Code != http.StatusNotFound {
		t.Errorf("unknown route: %d", got.Code)
	}
	if got := serve(h, key, "PATCH", "/api/v1/users/x", "", ""); got.Code != http.StatusMethodNotAllowed || got.Header().Get("Allow") != "PUT, DELETE" {
		t.Errorf("PATCH /users/x: %d %q", got.Code, got.Header().Get("Allow"))
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// FuzzRequestBodies: whatever the body of any body-reading operation, the
// answer is not a 5xx and an error is {code, message}.
func FuzzRequestBodies(f *testing.F) {
	for i, b := range badBodies[:len(badBodies)-2] {
		f.Add(uint8(i), b)
	}
	f.Add(uint8(5), `{"kind":"client_id","value":"x","duration_seconds":10}`)
	f.Add(uint8(2), `{"username":"u","password":"longenough","role":"viewer"}`)
	h, key := keyedNode(f)
	f.Fuzz(func(t *testing.T, i uint8, body string) {
		rt := bodyRoutes[int(i)%len(bodyRoutes)]
		checkAnswer(t, rt.path, serve(h, key, rt.method, rt.path, "application/json", body))
	})
}

var _ = admin.AccountsFile
