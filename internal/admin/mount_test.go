package admin_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/culexmq/culex/internal/admin"
)

// TestMountedHandlers: /metrics, /healthz and /readyz are served without
// a login, the dashboard at /; a second Mount keeps what the first set.
func TestMountedHandlers(t *testing.T) {
	text := func(s string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s) })
	}
	srv := startNode(t, nil)
	h := srv.Admin()
	h.Mount(admin.Handlers{Metrics: text("metrics"), Healthz: text("alive"), Readyz: text("ready")})
	h.Mount(admin.Handlers{Dashboard: text("dashboard")})
	hh := h.Handler()
	for path, want := range map[string]string{"/metrics": "metrics", "/healthz": "alive", "/readyz": "ready", "/": "dashboard", "/clients": "dashboard"} {
		rec := serve(hh, "", "GET", path, "", "")
		if rec.Code != 200 || rec.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q", path, rec.Code, rec.Body.String(), want)
		}
	}
	if rec := serve(hh, "", "GET", "/api/v1/clients", "", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("the API without a key: %d", rec.Code)
	}
}
