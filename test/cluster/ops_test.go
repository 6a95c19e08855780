package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
)

// adminExtra gives every node an admin listener on a free port.
const adminExtra = `admin:
  listen: 127.0.0.1:0
  default_password: "cluster-admin-pw"
`

var adminRE = regexp.MustCompile(`msg="admin listening" url=(http://\S+)`)

// adminURL is the node's admin listener URL from its log.
func adminURL(t *testing.T, n *clustertest.Node) string {
	t.Helper()
	n.WaitLog(adminRE)
	return adminRE.FindStringSubmatch(n.Log())[1]
}

// api is an admin API client: logged in (cookie, CSRF token), then with
// an API key made on one node.
type api struct {
	t         *testing.T
	hc        *http.Client
	base      string
	csrf, key string
}

func (a *api) do(method, path string, body, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", a.csrf)
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && json.Unmarshal(data, out) != nil {
		a.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return resp.StatusCode
}

// adminAPI logs in to the node's admin API and makes an API key.
func adminAPI(t *testing.T, n *clustertest.Node) *api {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &api{t: t, hc: &http.Client{Jar: jar, Timeout: waitTimeout}, base: adminURL(t, n)}
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	if st := a.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": "cluster-admin-pw"}, &me); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	a.csrf = me.CSRF
	var key struct{ Key string }
	if st := a.do("POST", "/api/v1/api-keys", map[string]string{"name": "ops-test", "role": "admin"}, &key); st >= 300 {
		t.Fatalf("api key: %d", st)
	}
	a.key = key.Key
	return a
}

// ctl runs `culex ctl` against a.
func (a *api) ctl(args ...string) string {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, clustertest.Binary(a.t), append([]string{"ctl"}, args...)...)
	cmd.Env = append(clustertest.Environ(), "CULEX_ADMIN_URL="+a.base, "CULEX_API_KEY="+a.key)
	out, err := cmd.CombinedOutput()
	if err != nil {
		a.t.Fatalf("culex ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

type nodeJSON struct {
	Name, Status, Role, Ready string
	MetaLeader                string `json:"meta_leader"`
	Connections               int64
}

type clientsPage struct {
	Data []struct {
		ClientID  string `json:"client_id"`
		Node      string `json:"node"`
		Connected bool   `json:"connected"`
	} `json:"data"`
	Meta struct {
		Count   int      `json:"count"`
		Missing []string `json:"missing_nodes"`
	} `json:"meta"`
}

// TestAdminAcrossNodes: the admin API of one node of three lists every
// node (role, readiness, the leading core), finds a client connected to
// another node (list and detail), and kicks it there: the real
// mosquitto_sub, a v5 client, gets DISCONNECT and exits. culex ctl
// cluster status prints the nodes. The cluster's metrics are served.
func TestAdminAcrossNodes(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: adminExtra})
	a := adminAPI(t, c.Nodes[0])

	var nodes []nodeJSON
	if st := a.do("GET", "/api/v1/nodes", nil, &nodes); st != http.StatusOK || len(nodes) != 3 {
		t.Fatalf("GET /nodes: %d %+v, want the 3 nodes", st, nodes)
	}
	for i, n := range nodes {
		if n.Name != c.Nodes[i].Name || n.Role != "core" || n.Status != "running" || n.Ready != "yes" {
			t.Errorf("node %d: %+v, want %s, core, running, ready", i, n, c.Nodes[i].Name)
		}
	}
	out := a.ctl("cluster", "status")
	for _, want := range []string{"c0", "c1", "c2", "core", "leading core"} {
		if !strings.Contains(out, want) {
			t.Errorf("culex ctl cluster status lacks %q:\n%s", want, out)
		}
	}

	// A v5 device on node c1, held by a real mosquitto_sub.
	host, port, _ := net.SplitHostPort(c.Nodes[1].MQTT())
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-V", "5", "-h", host, "-p", port, "-i", "dev-b", "-t", "cmd/dev-b", "-q", "1")
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v (apt install mosquitto-clients)", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sub.Wait() }()

	var page clientsPage
	for deadline := time.Now().Add(waitTimeout); ; {
		a.do("GET", "/api/v1/clients?client_id=dev-b", nil, &page)
		if len(page.Data) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev-b on c1 not listed by c0: %+v", page)
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	if d := page.Data[0]; d.Node != "c1" || !d.Connected || page.Meta.Count != 1 || len(page.Meta.Missing) != 0 {
		t.Fatalf("GET /clients on c0: %+v, want dev-b connected on c1", page)
	}
	var detail struct {
		Node string `json:"node"`
		Subs []struct {
			Topic string `json:"topic"`
		} `json:"subscription_list"`
	}
	if st := a.do("GET", "/api/v1/clients/dev-b", nil, &detail); st != http.StatusOK || detail.Node != "c1" ||
		len(detail.Subs) != 1 || detail.Subs[0].Topic != "cmd/dev-b" {
		t.Fatalf("GET /clients/dev-b on c0: %d %+v", st, detail)
	}
	var e struct{ Code string }
	if st := a.do("GET", "/api/v1/clients/nobody", nil, &e); st != http.StatusNotFound {
		t.Fatalf("GET /clients/nobody: %d %+v, want 404", st, e)
	}

	a.ctl("clients", "kick", "dev-b")
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		t.Fatalf("mosquitto_sub on c1 still runs after the kick on c0:\n%s", subOut.String())
	}
	if !strings.Contains(c.Nodes[1].Log(), `msg="admin: client kicked" client_id=dev-b`) {
		t.Errorf("c1 did not log the kick:\n%s", c.Nodes[1].Log())
	}

	resp, err := http.Get(a.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"culex_cluster_nodes_up 3", "culex_cluster_meta_leader_known 1", "culex_cluster_messages_forwarded_total"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	partialAnswers(t, a, c.Nodes[2])
}

// partialAnswers freezes node n (SIGSTOP) and asks a's node for the
// clients and nodes: the answers name n as missing and unreachable. A
// request that starts after the others gave n up (cluster.node_timeout)
// does not ask it: then n is resumed, rejoins, and is frozen again until
// both answers were seen.
func partialAnswers(t *testing.T, a *api, n *clustertest.Node) {
	t.Helper()
	clientsFlagged, nodesFlagged := false, false
	for deadline := time.Now().Add(3 * waitTimeout); ; {
		n.Signal(clustertest.Freeze)
		var page clientsPage
		a.do("GET", "/api/v1/clients", nil, &page)
		var nodes []nodeJSON
		a.do("GET", "/api/v1/nodes", nil, &nodes)
		n.Signal(clustertest.Thaw)
		i := slices.IndexFunc(nodes, func(x nodeJSON) bool { return x.Name == n.Name })
		if len(page.Meta.Missing) > 0 && !slices.Equal(page.Meta.Missing, []string{n.Name}) || i >= 0 && nodes[i].Status != "unreachable" {
			t.Fatalf("with %s frozen: clients meta %+v, nodes %+v", n.Name, page.Meta, nodes)
		}
		clientsFlagged = clientsFlagged || len(page.Meta.Missing) == 1
		nodesFlagged = nodesFlagged || i >= 0
		if clientsFlagged && nodesFlagged {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was never asked while frozen", n.Name)
		}
		for { // given up while frozen: wait until it is back
			nodes = nil
			a.do("GET", "/api/v1/nodes", nil, &nodes)
			if slices.ContainsFunc(nodes, func(x nodeJSON) bool { return x.Name == n.Name && x.Status == "running" }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not come back: %+v", n.Name, nodes)
			}
			time.Sleep(50 * time.Millisecond) // poll
		}
	}
}
