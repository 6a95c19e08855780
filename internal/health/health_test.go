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

// TestReadyzScope: /readyz runs every check and fails naming the shared
// one (kafka) that is down; /readyz?scope=node, the load balancers' form,
// skips shared checks and answers 200 while a node-local one passes, and
// still 503 when a node-local check fails; ?exclude=a,b skips the named
// checks (unknown names ignored); a bad scope is a 400 naming it. Only a
// full evaluation is logged.
func TestReadyzScope(t *testing.T) {
	logs := &testlog.Buffer{}
	c := New(slog.New(slog.NewTextHandler(logs, nil)))
	var storeErr error
	c.Add("store", func(context.Context) error { return storeErr })
	c.AddShared("kafka", func(context.Context) error { return errors.New("no Kafka broker answers") })
	c.AddShared("cluster", func(context.Context) error { return nil })
	get := func(target string) (int, string) {
		rec := httptest.NewRecorder()
		c.Readyz().ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]kafka failed: no Kafka broker answers") {
		t.Errorf("/readyz: %d\n%s", code, body)
	}
	for _, target := range []string{"/readyz?scope=node", "/readyz?exclude=kafka", "/readyz?exclude=nosuch,kafka", "/readyz?exclude=nosuch&exclude=kafka"} {
		if code, body := get(target); code != http.StatusOK || !strings.Contains(body, "[~]kafka skipped") || !strings.Contains(body, "[+]store ok") {
			t.Errorf("%s with kafka down: %d, want 200\n%s", target, code, body)
		}
	}
	if code, body := get("/readyz?scope=node&format=json"); code != http.StatusOK || !strings.Contains(body, `"skipped":["kafka","cluster"]`) {
		t.Errorf("scope=node json: %d %s", code, body)
	}
	storeErr = errors.New("disk full")
	if code, body := get("/readyz?scope=node"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]store failed: disk full") {
		t.Errorf("scope=node with the store down: %d, want 503\n%s", code, body)
	}
	if code, body := get("/readyz?scope=cluster"); code != http.StatusBadRequest || !strings.Contains(body, `scope="cluster"`) {
		t.Errorf("bad scope: %d %s", code, body)
	}
	if n := strings.Count(logs.String(), "node not ready"); n != 1 {
		t.Errorf("%d not-ready log lines, want 1 (only the full evaluation is logged):\n%s", n, logs)
	}
}
