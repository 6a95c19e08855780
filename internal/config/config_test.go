package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

const examplePath = "../../culex.example.yaml"

// The annotated example must be exactly the defaults, so that what it says
// is true.
func TestExampleIsDefaults(t *testing.T) {
	c := Default()
	if err := LoadFile(examplePath, &c); err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(c, want) {
		t.Errorf("example file differs from Default():\n got %+v\nwant %+v", c, want)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys(reflect.TypeOf(Config{}), "") {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(data), leaf+":") {
			t.Errorf("culex.example.yaml does not mention key %s", k)
		}
	}
}

func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	writeFile(t, file, "log_level: warn\nmqtt:\n  max_connections: 10\n  max_inflight: 7\nsys_interval: 1m\n")
	env := []string{"CULEX_MQTT_MAX_CONNECTIONS=20", "CULEX_MQTT_MAX_QOS=1", "PATH=/bin"}
	c, err := Parse("serve", []string{"-c", file, "--mqtt.max-qos", "0", "--data-dir", "/tmp/x"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.LogLevel, c.MQTT.MaxConnections, c.MQTT.MaxInflight, c.MQTT.MaxQoS, c.DataDir, c.SysInterval}
	want := []any{"warn", 20, uint16(7), byte(0), "/tmp/x", time.Minute}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestListenFlagsAndEnv(t *testing.T) {
	c, err := Parse("serve", []string{"--listen", "tcp://127.0.0.1:1883", "--listen",
		"ssl://:8883?cert_file=c.pem&key_file=k.pem&proxy_protocol=true&client_auth=request&trusted_proxies=10.0.0.0/8+192.0.2.7&trusted_proxies=::1"}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []Listener{{URL: "tcp://127.0.0.1:1883"},
		{URL: "ssl://:8883", ProxyProtocol: true, TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7", "::1"},
			TLS: TLS{CertFile: "c.pem", KeyFile: "k.pem", ClientAuth: "request"}}}
	if !reflect.DeepEqual(c.Listeners, want) {
		t.Errorf("listeners %+v, want %+v", c.Listeners, want)
	}
	c, err = Parse("serve", nil, []string{"CULEX_LISTEN=tcp://:1,ws://:2/mqtt?proxy_protocol=true&trusted_proxies=127.0.0.1&trusted_proxies=10.1.0.0/16"}, io.Discard)
	if err != nil || len(c.Listeners) != 2 || c.Listeners[1].URL != "ws://:2/mqtt" ||
		!reflect.DeepEqual(c.Listeners[1].TrustedProxies, []string{"127.0.0.1", "10.1.0.0/16"}) {
		t.Errorf("CULEX_LISTEN: %+v %v", c.Listeners, err)
	}
}

func TestListenerMappingAndScalarForms(t *testing.T) {
	c := Default()
	err := loadYAML([]byte("listeners:\n  - tcp://:1\n  - url: ssl://:2\n    tls: {cert_file: a, key_file: b}\n"+
		"    proxy_protocol: true\n    trusted_proxies: [10.0.0.0/8, \"::ffff:192.0.2.1\"]\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 2 || c.Listeners[1].TLS.KeyFile != "b" {
		t.Errorf("listeners %+v", c.Listeners)
	}
	ps, err := c.Listeners[1].TrustedPrefixes()
	if err != nil || fmt.Sprint(ps) != "[10.0.0.0/8 192.0.2.1/32]" {
		t.Errorf("trusted prefixes %v %v", ps, err)
	}
}

// TestErrors pins every start-up error message: each must name its key.
func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		args []string
		env  []string
	}{
		{name: "unknown key with suggestion", yaml: "mqtt:\n  max_conections: 5\n"},
		{name: "unknown top-level key", yaml: "listenrs: []\n"},
		{name: "bad duration", yaml: "mqtt:\n  connect_timeout: 10\n"},
		{name: "bad number", yaml: "mqtt:\n  max_inflight: lots\n"},
		{name: "number out of range", yaml: "mqtt:\n  receive_maximum: 70000\n"},
		{name: "bad boolean", yaml: "auth:\n  allow_anonymous: maybe\n"},
		{name: "mapping expected", yaml: "mqtt: 5\n"},
		{name: "list expected", yaml: "listeners: tcp://:1883\n"},
		{name: "unknown listener key", yaml: "listeners:\n  - url: tcp://:1\n    proxy: true\n"},
		{name: "bad log level", args: []string{"--log-level", "loud"}},
		{name: "bad log format", env: []string{"CULEX_LOG_FORMAT=xml"}},
		{name: "unknown flag with suggestion", args: []string{"--mqtt.max-conections", "5"}},
		{name: "unknown flag in the key's spelling", args: []string{"--mqtt.max_conections=5"}},
		{name: "bad scheme", args: []string{"--listen", "udp://:1883"}},
		{name: "no port", args: []string{"--listen", "tcp://localhost"}},
		{name: "tls without cert", args: []string{"--listen", "ssl://:8883"}},
		{name: "tls options on tcp", args: []string{"--listen", "tcp://:1?cert_file=x"}},
		{name: "require without ca", args: []string{"--listen", "ssl://:1?cert_file=a&key_file=b&client_auth=require"}},
		{name: "unknown query key", args: []string{"--listen", "tcp://:1?nodelay=1"}},
		{name: "proxy protocol without trusted proxies", yaml: "listeners:\n  - url: tcp://:1\n    proxy_protocol: true\n"},
		{name: "bad trusted proxy", args: []string{"--listen", "tcp://:1?proxy_protocol=true&trusted_proxies=10.0.0.0/33"}},
		{name: "trusted proxies without proxy protocol", env: []string{"CULEX_LISTEN=tcp://:1?trusted_proxies=10.0.0.1"}},
		{name: "several bad values", args: []string{"--mqtt.max-qos", "3", "--mqtt.queue-overflow", "block", "--mqtt.receive-maximum", "0"}},
		{name: "bad flag value", args: []string{"--mqtt.write-timeout", "soon"}},
		{name: "unknown env", env: []string{"CULEX_MQTT_MAXCONN=5"}},
		{name: "bad env value", env: []string{"CULEX_MQTT_MAX_CONNECTIONS=-1"}},
		{name: "stray argument", args: []string{"serve"}},
		{name: "kafka group session timeout", yaml: "kafka:\n  group_session_timeout: 100ms\n"},
		{name: "kafka group session timeout below Kafka's minimum", yaml: "kafka:\n  group_session_timeout: 5s\n"},
		{name: "kafka group instance id", yaml: "kafka:\n  group_instance_id: node/1\n"},
		{name: "bridge queue limits", yaml: "mqtt:\n  bridge_max_queued_messages: 0\n  bridge_max_queued_bytes: 10\n"},
		{name: "kafka command max_stall", yaml: "kafka:\n  commands:\n    - topics: t\n      mqtt_topic: x\n      max_stall: -1s\n"},
	}
	var out strings.Builder
	for _, tc := range cases {
		args, dir := tc.args, t.TempDir()
		if tc.yaml != "" {
			file := filepath.Join(dir, "culex.yaml")
			writeFile(t, file, tc.yaml)
			args = append([]string{"-c", file}, args...)
		}
		_, err := Parse("serve", args, tc.env, io.Discard)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		fmt.Fprintf(&out, "## %s\n%s\n\n", tc.name, strings.ReplaceAll(err.Error(), dir, "DIR"))
	}
	golden(t, "testdata/errors.golden", out.String())
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		writeFile(t, path, got)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, got)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"max_conections", "max_connections", 1}} {
		if d := distance(tc.a, tc.b); d != tc.d {
			t.Errorf("distance(%q,%q)=%d want %d", tc.a, tc.b, d, tc.d)
		}
	}
}

// TestAuthDependentDefaults: allow_anonymous left out is on without an
// auth backend and off with one, however the backend is configured;
// given in the file, the environment or a flag, it is what it says.
// acl_default left out is deny with an ACL file and allow without.
func TestAuthDependentDefaults(t *testing.T) {
	cases := []struct {
		name      string
		yaml      string
		args, env []string
		anonymous bool
		aclAllow  bool
		exposures int
	}{
		{name: "nothing configured", anonymous: true, aclAllow: true, exposures: 1},
		{name: "users file", yaml: "auth:\n  users_file: u\n", anonymous: false, aclAllow: true, exposures: 1},
		{name: "users and acl files", yaml: "auth:\n  users_file: u\n  acl_file: a\n", anonymous: false, aclAllow: false},
		{name: "jwt key by flag", args: []string{"--auth.jwt.secret-file", "s"}, anonymous: false, aclAllow: true, exposures: 1},
		{name: "webhook by env", env: []string{"CULEX_AUTH_HTTP_URL=http://x"}, anonymous: false, aclAllow: true, exposures: 1},
		{name: "client ca", yaml: "auth:\n  cert:\n    ca_file: ca.pem\n  acl_file: a\n", anonymous: false},
		{name: "anonymous given in file", yaml: "auth:\n  users_file: u\n  acl_file: a\n  allow_anonymous: true\n",
			anonymous: true, exposures: 1},
		{name: "anonymous given by env", yaml: "auth:\n  users_file: u\n  acl_file: a\n",
			env: []string{"CULEX_AUTH_ALLOW_ANONYMOUS=true"}, anonymous: true, exposures: 1},
		{name: "anonymous given by flag", yaml: "auth:\n  users_file: u\n  acl_file: a\n",
			args: []string{"--auth.allow-anonymous=true"}, anonymous: true, exposures: 1},
		{name: "anonymous off without backend", yaml: "auth:\n  allow_anonymous: false\n", aclAllow: true},
		{name: "acl default allow given", yaml: "auth:\n  users_file: u\n  acl_file: a\n  acl_default: allow\n",
			aclAllow: true, exposures: 1},
		{name: "acl default deny without file", yaml: "auth:\n  users_file: u\n  acl_default: deny\n"},
	}
	for _, tc := range cases {
		args := tc.args
		if tc.yaml != "" {
			file := filepath.Join(t.TempDir(), "culex.yaml")
			writeFile(t, file, tc.yaml)
			args = append([]string{"-c", file}, args...)
		}
		c, err := Parse("serve", args, tc.env, io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		a := &c.Auth
		if a.AnonymousAllowed() != tc.anonymous || a.ACLDefaultAllow() != tc.aclAllow || len(a.Exposures()) != tc.exposures {
			t.Errorf("%s: anonymous %v, acl default allow %v, exposures %q; want %v, %v, %d", tc.name,
				a.AnonymousAllowed(), a.ACLDefaultAllow(), a.Exposures(), tc.anonymous, tc.aclAllow, tc.exposures)
		}
	}
	// Code that builds a Config says what it means.
	c := Default()
	c.Auth.UsersFile = "u"
	if c.Auth.AnonymousAllowed() {
		t.Error("Default() with a users file allows anonymous clients")
	}
	c.Auth.AllowAnonymousSet = true
	if !c.Auth.AnonymousAllowed() {
		t.Error("AllowAnonymousSet did not make allow_anonymous stick")
	}
	if _, err := Parse("serve", []string{"--auth.acl-default", "maybe"}, nil, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "auth.acl_default") {
		t.Errorf("acl_default maybe: %v, want an error naming the key", err)
	}
}
