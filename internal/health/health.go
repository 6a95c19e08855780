// Package health answers whether a node is alive (/healthz) and ready for
// traffic (/readyz). Readiness is one function, Checker.Ready, that runs
// every registered check; the HTTP endpoint answers from it and the node
// logs from it when readiness changes, so that a load balancer's view and
// the log agree. docs/operations.md shows HAProxy and Kubernetes probes.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Check reports why a part of the node is not ready, or nil. It must
// return once ctx ends.
type Check func(ctx context.Context) error

// Failure is one check that failed, named as registered.
type Failure struct {
	Check string `json:"check"`
	Error string `json:"error"`
}

// Timeout bounds one readiness evaluation; a check still running then
// fails with "no answer in time".
const Timeout = 5 * time.Second

// Checker runs the named readiness checks.
type Checker struct {
	log *slog.Logger

	// mu guards checks and last.
	mu     sync.Mutex
	checks []named
	// last is the outcome of the previous evaluation ("" before the first),
	// to log changes only.
	last string
}

type named struct {
	name string
	fn   Check
}

// New returns a Checker without checks (always ready) that logs
// readiness changes to log (nil: not logged).
func New(log *slog.Logger) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Checker{log: log}
}

// Add registers a check under name (listeners, store, cluster, kafka...).
func (c *Checker) Add(name string, fn Check) {
	c.mu.Lock()
	c.checks = append(c.checks, named{name, fn})
	c.mu.Unlock()
}

// Ready runs every check at once, within Timeout, and returns the failures
// in registration order (none: ready). A change from the previous call is
// logged: WARN naming each failing check, INFO when ready again.
func (c *Checker) Ready(ctx context.Context) []Failure {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	c.mu.Lock()
	checks := c.checks
	c.mu.Unlock()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, ch := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = run(ctx, ch.fn)
		}()
	}
	wg.Wait()
	var fails []Failure
	for i, err := range errs {
		if err != nil {
			fails = append(fails, Failure{checks[i].name, err.Error()})
		}
	}
	c.note(fails)
	return fails
}

// run calls fn and gives up on it once ctx ends: a check stuck on a hung
// disk or network fails readiness instead of hanging the probe.
func run(ctx context.Context, fn Check) error {
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.New("no answer in time")
	}
}

// note logs a change of readiness.
func (c *Checker) note(fails []Failure) {
	var b strings.Builder
	for _, f := range fails {
		fmt.Fprintf(&b, "%s: %s; ", f.Check, f.Error)
	}
	state := strings.TrimSuffix(b.String(), "; ")
	if state == "" {
		state = "ready"
	}
	c.mu.Lock()
	prev := c.last
	c.last = state
	c.mu.Unlock()
	switch {
	case state == prev:
	case len(fails) == 0 && prev != "":
		c.log.Info("node ready again", "was", prev)
	case len(fails) == 0:
		c.log.Info("node ready")
	default:
		names := make([]string, len(fails))
		for i, f := range fails {
			names[i] = f.Check
		}
		c.log.Warn("node not ready", "failing", strings.Join(names, ","), "why", state)
	}
}

// Run evaluates readiness every period until ctx ends, so that a change is
// logged even when nothing probes the node.
func (c *Checker) Run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		c.Ready(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Healthz answers 200 "ok" while the process serves HTTP at all: a
// liveness probe that restarts the process only when it is wedged.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
}

// Readyz answers 200 when Ready finds no failure and 503 naming each
// failing check otherwise: text, one line per check ("[+]store ok",
// "[-]kafka failed: ..."), or JSON with ?format=json or an Accept of
// application/json.
func (c *Checker) Readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fails := c.Ready(r.Context())
		code := http.StatusOK
		if len(fails) > 0 {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(struct {
				Ready    bool      `json:"ready"`
				Failures []Failure `json:"failures"`
			}{len(fails) == 0, append([]Failure{}, fails...)})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		failed := map[string]string{}
		for _, f := range fails {
			failed[f.Check] = f.Error
		}
		c.mu.Lock()
		checks := c.checks
		c.mu.Unlock()
		for _, ch := range checks {
			if err, ok := failed[ch.name]; ok {
				fmt.Fprintf(w, "[-]%s failed: %s\n", ch.name, err)
			} else {
				fmt.Fprintf(w, "[+]%s ok\n", ch.name)
			}
		}
		if len(fails) > 0 {
			fmt.Fprintln(w, "not ready")
		} else {
			fmt.Fprintln(w, "ready")
		}
	})
}
