package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
)

// fakePeers answers for node "b" from its own admin Server and never for
// node "ghost", as a node that stopped answering.
type fakePeers struct{ b *Server }

func (f fakePeers) Ask(_ context.Context, node string, req []byte) (map[string][]byte, []string) {
	out := map[string][]byte{}
	var missing []string
	if node == "" || node == "b" {
		out["b"] = f.b.Answer(req)
	}
	if node == "" || node == "ghost" {
		missing = append(missing, "ghost")
	}
	return out, missing
}

func testAdmin(t *testing.T, name string, peers Peers) *Server {
	t.Helper()
	b, err := broker.New(broker.Options{Config: config.Default().MQTT})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Admin.Listen, cfg.Admin.ListenSet, cfg.Admin.DefaultPassword = "127.0.0.1:0", true, "remote-test-pw"
	as, err := auth.New(cfg.Auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: cfg, Broker: b, Auth: as, NodeName: name, Peers: peers})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		b.Shutdown(ctx)
	})
	return s
}

// TestPartialAnswers: a node that does not answer is flagged: the client
// list names it in meta.missing_nodes, the node list shows it
// unreachable, and a client not found says which node was not asked.
func TestPartialAnswers(t *testing.T) {
	b := testAdmin(t, "b", nil)
	a := testAdmin(t, "a", fakePeers{b})
	key, secret, err := a.accounts.NewKey("t", "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, out any) int {
		req, _ := http.NewRequest("GET", a.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+key.ID+":"+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		json.NewDecoder(resp.Body).Decode(out)
		return resp.StatusCode
	}
	var nodes []Node
	get("/api/v1/nodes", &nodes)
	if len(nodes) != 3 || nodes[0].Name != "a" || nodes[1].Name != "b" || nodes[1].Status != "running" ||
		nodes[2].Name != "ghost" || nodes[2].Status != "unreachable" {
		t.Fatalf("nodes %+v, want a, b running, ghost unreachable", nodes)
	}
	var p page[clientJSON]
	if st := get("/api/v1/clients", &p); st != http.StatusOK || len(p.Meta.Missing) != 1 || p.Meta.Missing[0] != "ghost" {
		t.Fatalf("clients: %d %+v, want missing_nodes [ghost]", st, p.Meta)
	}
	var e struct{ Message string }
	if st := get("/api/v1/clients/x", &e); st != http.StatusNotFound || e.Message != `no client "x" (no answer from ghost)` {
		t.Fatalf("client x: %d %+v", st, e)
	}
}
