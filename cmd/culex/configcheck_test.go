package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheck: culex config check accepts what culex serve accepts,
// names the key of what it refuses, applies CULEX_* variables, and --print
// redacts passwords, secrets and URL credentials.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("listeners: [tcp://0.0.0.0:1883]\nkafka:\n  sasl: {mechanism: scram-sha-512, username: u, password: hunter2}\n"+
		"  source: {url: 'tcp://bridge:src-hunter3@127.0.0.1:1883'}\n"+
		"auth:\n  http: {url: 'https://hook:hook-hunter4@auth.example/check'}\n"+
		"cluster:\n  secret: cluster-hunter5\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("mqtt:\n  max_conections: 3\n"), 0o644)

	var out bytes.Buffer
	if err := configCheck([]string{good}, nil, &out); err != nil || !strings.Contains(out.String(), "valid") {
		t.Fatalf("good file: %v, %q", err, out.String())
	}
	err := configCheck([]string{bad}, nil, &out)
	if err == nil || !strings.Contains(err.Error(), `"mqtt.max_conections"`) {
		t.Errorf("bad key: %v, want an error naming mqtt.max_conections", err)
	}
	if err := configCheck([]string{good}, []string{"CULEX_MQTT_MAX_QOS=7"}, &out); err == nil ||
		!strings.Contains(err.Error(), "max_qos") {
		t.Errorf("CULEX_MQTT_MAX_QOS=7: %v, want an error naming mqtt.max_qos", err)
	}
	out.Reset()
	if err := configCheck([]string{"--print", good, "--mqtt.max-inflight", "7"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"url: tcp://0.0.0.0:1883", "max_inflight: 7", "password: <redacted>"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--print output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "hunter") {
		t.Errorf("--print shows a password or URL credentials:\n%s", out.String())
	}
}

// TestProbe: culex probe succeeds on 2xx and fails naming the status.
func TestProbe(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, "store: not open", http.StatusServiceUnavailable)
		}
	}))
	defer ts.Close()
	if err := probe([]string{ts.URL + "/readyz"}); err != nil {
		t.Errorf("2xx: %v", err)
	}
	if err := probe([]string{ts.URL + "/other"}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: %v, want an error naming the status", err)
	}
}
