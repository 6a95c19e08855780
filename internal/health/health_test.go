package health

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/testlog"
)

// TestReadyStuckCheck: a check that does not answer fails readiness with
// "no answer in time" instead of hanging the probe; the others are still
// reported.
func TestReadyStuckCheck(t *testing.T) {
	c := New(nil)
	release := make(chan struct{})
	defer close(release)
	c.Add("ok", func(context.Context) error { return nil })
	c.Add("stuck", func(context.Context) error { <-release; return nil }) // ignores ctx
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	fails := c.Ready(ctx)
	if len(fails) != 1 || fails[0].Check != "stuck" || fails[0].Error != "no answer in time" {
		t.Errorf("Ready: %+v", fails)
	}
}

// TestReadinessChangesLogged: the first evaluation, each change and the
// recovery are logged once; an unchanged state is not logged again.
func TestReadinessChangesLogged(t *testing.T) {
	logs := &testlog.Buffer{}
	c := New(slog.New(slog.NewTextHandler(logs, nil)))
	var down error
	c.Add("store", func(context.Context) error { return down })
	c.Ready(context.Background())
	down = errors.New("disk full")
	c.Ready(context.Background())
	c.Ready(context.Background())
	down = nil
	c.Ready(context.Background())
	want := []string{`msg="node ready"`, `level=WARN msg="node not ready" failing=store why="store: disk full"`, `msg="node ready again" was="store: disk full"`}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %s, want %s", i, lines[i], w)
		}
	}
}

// TestHealthz: 200 ok, not cached.
func TestHealthz(t *testing.T) {
	rec := httptest.NewRecorder()
	Healthz().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("/healthz: %d %q %v", rec.Code, rec.Body, rec.Header())
	}
}
