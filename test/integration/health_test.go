package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/health"
	"github.com/culexmq/culex/internal/server"
)

// healthServer serves srv's /healthz and /readyz on a loopback port.
func healthServer(t *testing.T, srv *server.Server) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health.Healthz())
	mux.Handle("GET /readyz", srv.Health().Readyz())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

// get returns the status code and body of GET url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestReadyzNamesFailingCheck: /readyz answers 200 with every check
// passing; once a listener stops accepting it answers 503 naming the
// listener check and the listener, in text and JSON, while /healthz stays
// 200; the log says the node is not ready, naming the check.
func TestReadyzNamesFailingCheck(t *testing.T) {
	srv, logs := startBrokerLogs(t)
	base := healthServer(t, srv)
	code, body := get(t, base+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "[+]listeners ok") || !strings.Contains(body, "[+]store ok") {
		t.Fatalf("/readyz of a running node: %d\n%s", code, body)
	}
	if err := srv.Listeners()[0].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "/readyz 503", func() bool {
		code, body = get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "[-]listeners failed: tcp://127.0.0.1:0 not accepting") || !strings.Contains(body, "[+]store ok") {
		t.Errorf("/readyz body does not name the failing listener:\n%s", body)
	}
	code, body = get(t, base+"/readyz?format=json")
	var r struct {
		Ready    bool
		Failures []health.Failure
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 503 || r.Ready || len(r.Failures) != 1 || r.Failures[0].Check != "listeners" {
		t.Errorf("/readyz?format=json: %d %s (%v)", code, body, err)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d while the process runs", code)
	}
	waitFor(t, waitTimeout, "the not-ready log line", func() bool {
		return strings.Contains(logs.String(), `msg="node not ready" failing=listeners`)
	})
}

// TestReadyzKafka: with a route acknowledging after Kafka (ack: kafka),
// /readyz fails naming kafka while no Kafka broker answers, and the node
// logs that it is ready again once Kafka is back.
func TestReadyzKafka(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	addr := kc.ListenAddrs()[0]
	srv, logs := startBrokerLogs(t, func(c *config.Config) {
		c.Kafka.Brokers = addr
		c.Kafka.Routes = []config.KafkaRoute{{Name: "telemetry", Filter: "t/#", Topic: "telemetry"}}
	})
	base := healthServer(t, srv)
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || !strings.Contains(body, "[+]kafka ok") {
		t.Fatalf("/readyz with Kafka up: %d\n%s", code, body)
	}
	kc.Close()
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]kafka failed: no Kafka broker answers") {
		t.Fatalf("/readyz with Kafka down: %d\n%s", code, body)
	}
	kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(portOf(t, addr)), kfake.SeedTopics(1, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	waitFor(t, 30*time.Second, "/readyz 200 with Kafka back", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})
	if !strings.Contains(logs.String(), `msg="node ready again"`) {
		t.Errorf("no 'node ready again' log line:\n%s", tail(logs.String(), 30))
	}
}

// portOf is the port of host:port.
func portOf(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHandshakeFailureLogged: a client that speaks plain MQTT to an ssl://
// listener fails the TLS handshake; the node logs it at WARN naming the
// listener and the peer (internal/listener logs it at debug only).
func TestHandshakeFailureLogged(t *testing.T) {
	pki := newPKI(t)
	srv, logs := startBrokerLogs(t, func(c *config.Config) {
		c.LogLevel = "info"
		c.Listeners = []config.Listener{{URL: "ssl://127.0.0.1:0", TLS: config.TLS{CertFile: pki.serverCert, KeyFile: pki.serverKey}}}
	})
	conn, err := net.Dial("tcp", hostPort(t, srv.URL("ssl")))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}) // a plain CONNECT
	io.Copy(io.Discard, conn)                                                   // until the node closes it
	conn.Close()
	waitFor(t, waitTimeout, "the handshake failure log line", func() bool {
		return strings.Contains(logs.String(), `level=WARN msg="TLS handshake failed" listener=ssl://127.0.0.1:0 remote=127.0.0.1:`)
	})
}

// TestHAProxyHealthCheck: a real HAProxy checking the node with `option
// httpchk GET /readyz` (as docs/operations.md shows) marks it UP, and DOWN
// once its MQTT listener stops accepting.
func TestHAProxyHealthCheck(t *testing.T) {
	haproxy := brokertest.Tool(t, "haproxy", "haproxy")
	srv := startBroker(t)
	hc, _ := url.Parse(healthServer(t, srv))
	dir := t.TempDir()
	sock := filepath.Join(dir, "haproxy.sock")
	cfg := fmt.Sprintf(`global
	stats socket %s mode 600 level admin
defaults
	mode tcp
	timeout connect 2s
	timeout client 30s
	timeout server 30s
backend culex
	option httpchk GET /readyz
	http-check expect status 200
	server node1 %s check port %s inter 100ms fall 1 rise 1
`, sock, tcpAddr(t, srv), hc.Port())
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", cfgFile)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	status := func() string {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return ""
		}
		defer c.Close()
		io.WriteString(c, "show stat\n")
		b, _ := io.ReadAll(c)
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Split(line, ","); len(f) > 17 && f[0] == "culex" && f[1] == "node1" {
				return f[17]
			}
		}
		return ""
	}
	var st string
	waitFor(t, 30*time.Second, "HAProxy to mark the node UP", func() bool { st = status(); return st == "UP" })
	if err := srv.Listeners()[0].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "HAProxy to mark the node DOWN", func() bool { st = status(); return strings.HasPrefix(st, "DOWN") })
}

// TestHealthOnAdminListener: culex serve answers /healthz and /readyz on
// its admin listener, without a login, and /metrics there counts a real
// client.
func TestHealthOnAdminListener(t *testing.T) {
	node := startCulex(t, t.TempDir(), "--admin.listen", "127.0.0.1:0", "--admin.default-password", "health-admin-pw")
	base := node.adminURL()
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || !strings.Contains(body, "[+]listeners ok") || !strings.Contains(body, "[+]store ok") {
		t.Errorf("/readyz: %d\n%s", code, body)
	}
	connectV5(t, node.addr, v5Connect("admin-metrics", true, 0))
	waitFor(t, waitTimeout, "culex_clients_connected 1 on the admin listener", func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, "\nculex_clients_connected 1\n")
	})
}
