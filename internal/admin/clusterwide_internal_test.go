package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// TestBansAndListsAcrossPeers: a ban added on node a is added on node b,
// which holds it in its data_dir; GET /bans lists it once; lifting it on a
// lifts it on b. Node ghost, which never answers, is named in
// Culex-Missing-Nodes and in the subscriptions' and topics'
// meta.missing_nodes; ?node=a asks nobody else.
func TestBansAndListsAcrossPeers(t *testing.T) {
	b := testAdmin(t, "b", nil)
	a := testAdmin(t, "a", fakePeers{b})
	key, secret, err := a.accounts.NewKey("t", "admin", "admin")
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, body, out any) (int, string) {
		t.Helper()
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, a.URL()+path, bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+key.ID+":"+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode, resp.Header.Get(missingHeader)
	}
	if st, missing := do("POST", "/api/v1/bans", map[string]any{"kind": "username", "value": "u1", "reason": "r"}, nil); st != http.StatusCreated || missing != "ghost" {
		t.Fatalf("POST /bans: %d, missing %q", st, missing)
	}
	if bb := b.manualBans(); len(bb) != 1 || bb[0].Value != "u1" || bb[0].Reason != "r" {
		t.Fatalf("node b's bans: %+v", bb)
	}
	var bans []banJSON
	if st, missing := do("GET", "/api/v1/bans", nil, &bans); st != http.StatusOK || missing != "ghost" || len(bans) != 1 || bans[0].Node != "" {
		t.Fatalf("GET /bans: %d %q %+v", st, missing, bans)
	}
	for _, path := range []string{"/api/v1/subscriptions", "/api/v1/topics"} {
		var p page[json.RawMessage]
		if st, _ := do("GET", path, nil, &p); st != http.StatusOK || len(p.Meta.Missing) != 1 || p.Meta.Missing[0] != "ghost" {
			t.Fatalf("GET %s: %d %+v, want missing_nodes [ghost]", path, st, p.Meta)
		}
		p = page[json.RawMessage]{}
		if st, _ := do("GET", path+"?node=a", nil, &p); st != http.StatusOK || len(p.Meta.Missing) != 0 {
			t.Fatalf("GET %s?node=a: %d %+v, want no node asked", path, st, p.Meta)
		}
	}
	if st, _ := do("DELETE", "/api/v1/bans/username/u1", nil, nil); st != http.StatusNoContent {
		t.Fatalf("DELETE /bans: %d", st)
	}
	if bb := b.manualBans(); len(bb) != 0 {
		t.Fatalf("node b's bans after the lift: %+v", bb)
	}
	if st, _ := do("DELETE", "/api/v1/bans/username/u1", nil, nil); st != http.StatusNotFound {
		t.Fatalf("DELETE /bans again: %d, want 404", st)
	}
}
