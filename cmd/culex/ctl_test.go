package main

import (
	"bytes"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// ctlAnswers are canned API answers by "METHOD path?query".
var ctlAnswers = map[string]string{
	"GET /api/v1/clients?connected=true&limit=2&page=1": `{"data":[{"client_id":"sensor-1","username":"dev1","node":"n1","connected":true,"address":"127.0.0.1:5000","proto_version":5,"subscriptions":1,"inflight":0,"queued":3},
		{"client_id":"sensor-2","username":"","node":"n1","connected":true,"address":"127.0.0.1:5001","proto_version":4,"subscriptions":0,"inflight":2,"queued":0}],"meta":{"page":1,"limit":2,"count":5}}`,
	"GET /api/v1/clients/dev%2F1": `{"client_id":"dev/1","username":"dev1","owner":"dev1","node":"n1","connected":false,"address":"","listener":"tcp://:1883","proto_version":5,"persistent":true,"session_expiry_seconds":3600,
		"disconnected_at":"2026-01-02T03:04:05Z","inflight":0,"inflight_max":0,"queued":7,"queued_bytes":70,"queue_max":10000,"queue_max_bytes":67108864,"subscription_list":[{"topic":"cmd/#","qos":1},{"topic":"t","share_group":"g","qos":0}]}`,
	"POST /api/v1/clients/dev%2F1/kick":                   ``,
	"GET /api/v1/retained?limit=100&page=1&topic=a%2F%23": `{"data":[{"topic":"a/b","qos":1,"payload_size":5,"from_client_id":"p"}],"meta":{"page":1,"limit":100,"count":1}}`,
	"GET /api/v1/bans":                                    `[{"kind":"address","value":"192.0.2.7","source":"failed_logins","reason":"failed logins","until":"2026-01-02T03:04:05Z"},{"kind":"client_id","value":"rogue","source":"manual","reason":"","until":null}]`,
	"GET /api/v1/nodes":                                   `[{"name":"n1","version":"v1.2.3","status":"running","uptime_seconds":3725,"connections":2,"sessions":5,"subscriptions":1,"listeners":["tcp://0.0.0.0:1883"]}]`,
	"GET /api/v1/kafka": `{"enabled":true,"routes":[{"name":"telemetry","filter":"devices/+/telemetry","topic":"telemetry","ack":"spool","produced":10,"produced_per_second":2.5,"failed":1,"expired":0,"in_flight":2,"acked_not_in_kafka":3,"spool_bytes":300}],
		"commands":[],"spool":{"entries":3,"bytes":300,"held":0,"held_topics":[]}}`,
	"POST /api/v1/users": ``,
}

// TestCtlGolden: the tables and messages of culex ctl for canned answers,
// the requests it makes (method, path, query, key and body), and the
// API's error as its error.
func TestCtlGolden(t *testing.T) {
	var bodies strings.Builder
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer kid:secret" {
			w.WriteHeader(401)
			io.WriteString(w, `{"code":"unauthorized","message":"log in"}`)
			return
		}
		key := r.Method + " " + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			key += "?" + r.URL.RawQuery
		}
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			fmt.Fprintf(&bodies, "%s %s\n", key, b)
		}
		a, ok := ctlAnswers[key]
		if !ok {
			w.WriteHeader(404)
			fmt.Fprintf(w, `{"code":"not_found","message":"no route %s"}`, key)
			return
		}
		if a == "" {
			w.WriteHeader(204)
		}
		io.WriteString(w, a)
	}))
	defer ts.Close()
	var out bytes.Buffer
	for _, args := range [][]string{
		{"clients", "list", "--connected", "true", "--limit", "2"},
		{"clients", "show", "dev/1"},
		{"clients", "kick", "dev/1"},
		{"--topic", "a/#", "retained", "list"},
		{"bans"},
		{"cluster", "status"},
		{"routes"},
		{"users", "add", "dev9", "--superuser"},
		{"retained", "show", "missing"},
		{"--api-key", "wrong", "bans"},
		{"clients", "frobnicate"},
		{"clients", "list", "--client-idd", "x"},
	} {
		fmt.Fprintf(&out, "$ culex ctl %s\n", strings.Join(args, " "))
		full := append([]string{"--url", ts.URL, "--api-key", "kid:secret"}, args...)
		if err := ctlCmd(full, strings.NewReader("devpass9\n"), &out, io.Discard); err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		fmt.Fprintln(&out)
	}
	out.WriteString("request bodies:\n" + bodies.String())
	golden(t, "testdata/ctl.golden", out.String())
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update and review the diff):\n%s", path, got)
	}
}

// TestCtlCAFile: --ca-file trusts an https admin listener's private CA;
// without it the certificate is refused.
func TestCtlCAFile(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `[]`)
	}))
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o600)
	var out bytes.Buffer
	if err := ctlCmd([]string{"--url", ts.URL, "--api-key", "k:s", "--ca-file", ca, "bans"}, nil, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "KIND") {
		t.Fatalf("with --ca-file: %v %q", err, out.String())
	}
	if err := ctlCmd([]string{"--url", ts.URL, "--api-key", "k:s", "bans"}, nil, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without --ca-file: %v", err)
	}
}
