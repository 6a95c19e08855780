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
	"net/url"
	"slices"
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
	// shared: the check is on something every node depends on alike
	// (Kafka, the cluster's JetStream); /readyz?scope=node skips it.
	shared bool
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
	c.checks = append(c.checks, named{name: name, fn: fn})
	c.mu.Unlock()
}

// AddShared registers a check on a dependency that every node shares
// (Kafka, the cluster's JetStream): when it fails, it fails on every node
// at once. /readyz runs it; /readyz?scope=node, the form for load
// balancers, skips it, so that an outage of Kafka does not take every
// node out of the load balancer.
func (c *Checker) AddShared(name string, fn Check) {
	c.mu.Lock()
	c.checks = append(c.checks, named{name: name, fn: fn, shared: true})
	c.mu.Unlock()
}

// Scope is which checks one readiness evaluation skips: those named in
// Exclude, and the shared ones when NodeOnly.
type Scope struct {
	NodeOnly bool
	Exclude  []string
}

// skips reports whether s leaves ch out.
func (s Scope) skips(ch named) bool {
	return (s.NodeOnly && ch.shared) || slices.Contains(s.Exclude, ch.name)
}

// full is the scope that runs every check.
func (s Scope) full() bool { return !s.NodeOnly && len(s.Exclude) == 0 }

// ParseScope reads /readyz's query: scope=node (skip shared checks; "all"
// or empty: run them) and exclude=a,b (skip the named checks; names not
// registered are ignored, since a check such as kafka exists only on
// nodes configured for it). Any other scope is an error naming it.
func ParseScope(q url.Values) (Scope, error) {
	var s Scope
	switch v := q.Get("scope"); v {
	case "", "all":
	case "node":
		s.NodeOnly = true
	default:
		return s, fmt.Errorf("scope=%q: want node or all", v)
	}
	for _, v := range q["exclude"] {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				s.Exclude = append(s.Exclude, n)
			}
		}
	}
	return s, nil
}

// Ready runs every check at once, within Timeout, and returns the failures
// in registration order (none: ready). A change from the previous call is
// logged: WARN naming each failing check, INFO when ready again.
func (c *Checker) Ready(ctx context.Context) []Failure {
	return c.ReadyIn(ctx, Scope{})
}

// ReadyIn is Ready without the checks scope skips. Only an evaluation of
// every check is logged: a load balancer's narrower probe does not flip
// the logged state.
func (c *Checker) ReadyIn(ctx context.Context, scope Scope) []Failure {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	c.mu.Lock()
	checks := slices.DeleteFunc(slices.Clone(c.checks), scope.skips)
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
	if scope.full() {
		c.note(fails)
	}
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
// "[-]kafka failed: ...", "[~]kafka skipped"), or JSON with ?format=json
// or an Accept of application/json. ?scope=node skips the shared checks
// and ?exclude=a,b the named ones (ParseScope); a bad scope is a 400.
func (c *Checker) Readyz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, err := ParseScope(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fails := c.ReadyIn(r.Context(), scope)
		code := http.StatusOK
		if len(fails) > 0 {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		c.mu.Lock()
		checks := c.checks
		c.mu.Unlock()
		if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
			skipped := []string{}
			for _, ch := range checks {
				if scope.skips(ch) {
					skipped = append(skipped, ch.name)
				}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(struct {
				Ready    bool      `json:"ready"`
				Failures []Failure `json:"failures"`
				Skipped  []string  `json:"skipped"`
			}{len(fails) == 0, append([]Failure{}, fails...), skipped})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		failed := map[string]string{}
		for _, f := range fails {
			failed[f.Check] = f.Error
		}
		for _, ch := range checks {
			if scope.skips(ch) {
				fmt.Fprintf(w, "[~]%s skipped\n", ch.name)
			} else if err, ok := failed[ch.name]; ok {
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
