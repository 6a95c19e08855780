package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

// scrape GETs url and returns the body.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

// metricsServer serves srv's /metrics on a loopback port.
func metricsServer(t *testing.T, srv *server.Server) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestMetricsPromtool: the node's /metrics output passes `promtool check
// metrics` (Prometheus' own linter: names, units, _total, help text) and
// carries the connection count of clients a real client library holds,
// their messages by QoS, a CONNECT refused at max_connections, and what
// another part registered with RegisterMetrics.
func TestMetricsPromtool(t *testing.T) {
	promtool := brokertest.Tool(t, "promtool", "prometheus")
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxConnections = 1 })
	extra := prometheus.NewCounter(prometheus.CounterOpts{Name: "culex_cluster_test_total", Help: "A collector of another part."})
	extra.Add(3)
	if err := srv.RegisterMetrics(extra); err != nil {
		t.Fatal(err)
	}
	base := metricsServer(t, srv)
	c := connectV5(t, tcpAddr(t, srv), v5Connect("metrics-a", true, 0))
	c.subscribe(sub("m/#", 1))
	c.publish("m/x", 1, "hello")
	waitClients(t, srv, 1)
	if _, ack, err := dialV5(t, tcpAddr(t, srv), v5Connect("metrics-b", true, 0), nil); err == nil {
		t.Fatalf("a second client connected past max_connections 1: %+v", ack)
	}
	out := scrape(t, base+"/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(out)
	if res, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, res)
	}
	for _, want := range []string{
		"culex_clients_connected 1",
		`culex_connections{listener="tcp://127.0.0.1:0",protocol="5.0"} 1`,
		`culex_connects_total{listener="tcp://127.0.0.1:0",protocol="5.0"} 1`,
		`culex_messages_received_total{qos="1"} 1`,
		`culex_messages_sent_total{qos="1"} 1`,
		`culex_connects_refused_total{reason="quota_exceeded"} 1`,
		`culex_messages_dropped_total{reason="queue_full"} 0`,
		"culex_build_info{",
		"culex_cluster_test_total 3",
		"go_goroutines ",
		"process_open_fds ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", out)
	}
}

// TestPrometheusScrapesNode: a real Prometheus server (Debian's
// prometheus) scrapes a running `culex serve` at its admin listener's
// /metrics, and a PromQL query through Prometheus's HTTP API returns the
// number of clients connected; every query of the example Grafana
// dashboard is valid PromQL there.
func TestPrometheusScrapesNode(t *testing.T) {
	prom := brokertest.Tool(t, "prometheus", "prometheus")
	node := startCulex(t, t.TempDir(), "--admin.listen", "127.0.0.1:0", "--admin.default-password", "prom-admin-pw")
	target, _ := url.Parse(node.adminURL())
	for i := range 3 {
		connectV5(t, node.addr, v5Connect(fmt.Sprintf("prom-%d", i), true, 0))
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: culex\n    static_configs:\n      - targets: ['%s']\n", target.Host)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	api := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	var logs lockedBuffer
	cmd := exec.Command(prom, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+api)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", tail(logs.String(), 40))
		}
	})
	query := func(q string) (string, bool) {
		resp, err := http.Get("http://" + api + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return "", false
		}
		defer resp.Body.Close()
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Value [2]any
				}
			}
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || r.Status != "success" || len(r.Data.Result) == 0 {
			return "", false
		}
		v, _ := r.Data.Result[0].Value[1].(string)
		return v, true
	}
	var up, connected string
	waitFor(t, 60*time.Second, "prometheus to scrape the node (up == 1)", func() bool {
		up, _ = query(`up{job="culex"}`)
		return up == "1"
	})
	waitFor(t, 30*time.Second, "culex_clients_connected == 3 through PromQL", func() bool {
		connected, _ = query(`sum(culex_connections)`)
		return connected == "3"
	})
	if v, _ := query(`culex_clients_connected`); v != "3" {
		t.Errorf("culex_clients_connected = %q, want 3", v)
	}
	// Every query of the example Grafana dashboard is valid PromQL.
	dash, err := os.ReadFile("../../deploy/grafana/culex.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct{ Targets []struct{ Expr string } }
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("deploy/grafana/culex.json: %v", err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr := strings.NewReplacer("$instance", ".*", "$job", ".*").Replace(tg.Expr)
			resp, err := http.Get("http://" + api + "/api/v1/query?query=" + url.QueryEscape(expr))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("dashboard query %s: %s %s", tg.Expr, resp.Status, body)
			}
		}
	}
}

// TestMetricsLoginsByBackend: logins are counted by the backend that
// decided them: a users-file user's right and wrong passwords under
// backend="users", an unknown user (no backend answered) under "none".
func TestMetricsLoginsByBackend(t *testing.T) {
	_, usersFile := writeUsers(t, t.TempDir(), "dev1")
	srv := startBroker(t, func(c *config.Config) {
		c.Auth.AllowAnonymous = false
		c.Auth.UsersFile = usersFile
	})
	base := metricsServer(t, srv)
	addr := tcpAddr(t, srv)
	connectV5(t, addr, passwordLogin("dev1", "dev1", "secret-dev1"))
	for _, l := range []*paho.Connect{passwordLogin("bad", "dev1", "wrong"), passwordLogin("who", "nobody", "x")} {
		if _, ca, err := dialV5(t, addr, l, nil); err == nil {
			t.Fatalf("%s logged in: %+v", l.Username, ca)
		}
	}
	out := scrape(t, base+"/metrics")
	for _, want := range []string{
		`culex_auth_logins_total{backend="users",result="success"} 1`,
		`culex_auth_logins_total{backend="users",result="failure"} 1`,
		`culex_auth_logins_total{backend="none",result="failure"} 1`,
		`culex_connects_refused_total{reason="bad_user_name_or_password"} 2`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", out)
	}
}

// passwordLogin is a clean-start v5 CONNECT with a username and password.
func passwordLogin(id, user, pass string) *paho.Connect {
	cp := v5Connect(id, true, 0)
	cp.Username, cp.UsernameFlag = user, true
	cp.Password, cp.PasswordFlag = []byte(pass), true
	return cp
}
