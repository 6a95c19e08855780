package admin_test

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

// mosquittoPub runs mosquitto_pub to completion and returns its output
// and error.
func mosquittoPub(t *testing.T, srv *server.Server, args ...string) (string, error) {
	t.Helper()
	bin := brokertest.Tool(t, "mosquitto_pub", "mosquitto-clients")
	u, _ := url.Parse(srv.URL("tcp"))
	out, err := exec.Command(bin, append([]string{"-h", u.Hostname(), "-p", u.Port(), "-V", "5"}, args...)...).CombinedOutput()
	return string(out), err
}

// waitExit waits up to 20 s for a process started by mosquittoSub.
func waitExit(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the client still runs 20 s on")
	}
}

// TestUsersFileThroughAPI: device users added through the API log in with
// a real client at once; a password change disconnects the user's client;
// a removed user is refused; no answer carries a hash.
func TestUsersFileThroughAPI(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	os.WriteFile(users, nil, 0o600)
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-1"
		c.Auth.UsersFile = users
		c.Auth.WatchInterval = 0
	})
	a := adminClient(t, srv, "admin-pw-1")
	a.want(http.StatusCreated, "POST", "/api/v1/users", map[string]any{"username": "dev1", "password": "devpass1", "superuser": false}, nil)
	a.wantError(http.StatusConflict, "conflict", "POST", "/api/v1/users", map[string]any{"username": "dev1", "password": "devpass1"})
	a.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/users", map[string]any{"username": "a:b", "password": "devpass1"})
	a.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/users", map[string]any{"username": "x", "password": ""})
	_, list := a.call("GET", "/api/v1/users", nil)
	if !strings.Contains(string(list), `"username":"dev1"`) || strings.Contains(string(list), "$2") {
		t.Fatalf("users: %s", list)
	}
	if out, err := mosquittoPub(t, srv, "-i", "dev1-pub", "-u", "dev1", "-P", "devpass1", "-t", "t", "-m", "x"); err != nil {
		t.Fatalf("dev1 login after the API added it: %v %s", err, out)
	}
	cmd, _ := mosquittoSub(t, srv, "-V", "5", "-i", "dev1-sub", "-u", "dev1", "-P", "devpass1", "-t", "t")
	var page clientPage
	poll(t, "dev1-sub connected", func() bool {
		a.want(http.StatusOK, "GET", "/api/v1/clients?username=dev1&connected=true", nil, &page)
		return len(page.Data) == 1
	})
	a.want(http.StatusOK, "PUT", "/api/v1/users/dev1", map[string]any{"password": "devpass2"}, nil)
	waitExit(t, cmd) // its credentials changed: disconnected
	if _, err := mosquittoPub(t, srv, "-i", "dev1-pub", "-u", "dev1", "-P", "devpass1", "-t", "t", "-m", "x"); err == nil {
		t.Fatal("the old password still logs in")
	}
	if out, err := mosquittoPub(t, srv, "-i", "dev1-pub", "-u", "dev1", "-P", "devpass2", "-t", "t", "-m", "x"); err != nil {
		t.Fatalf("new password: %v %s", err, out)
	}
	a.want(http.StatusNoContent, "DELETE", "/api/v1/users/dev1", nil, nil)
	a.wantError(http.StatusNotFound, "not_found", "DELETE", "/api/v1/users/dev1", nil)
	if _, err := mosquittoPub(t, srv, "-i", "dev1-pub", "-u", "dev1", "-P", "devpass2", "-t", "t", "-m", "x"); err == nil {
		t.Fatal("a removed user still logs in")
	}
}

// TestUsersWithoutFile: without auth.users_file the users routes say so.
func TestUsersWithoutFile(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	a.wantError(http.StatusConflict, "not_configured", "GET", "/api/v1/users", nil)
	a.wantError(http.StatusConflict, "not_configured", "POST", "/api/v1/users", map[string]any{"username": "d", "password": "p"})
}

// TestACLShowAndReload: the rules are listed; a broken file is refused by
// reload with the previous rules kept; a fixed one is taken.
func TestACLShowAndReload(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	os.WriteFile(acl, []byte("allow publish devices/${username}/#\nuser ops\ndeny subscribe secret/#\n"), 0o600)
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-1"
		c.Auth.ACLFile = acl
		c.Auth.WatchInterval = 0
	})
	a := adminClient(t, srv, "admin-pw-1")
	var got struct {
		Users   string `json:"users_file"`
		File    string `json:"file"`
		Default string `json:"default"`
		Rules   []struct{ Permission, Action, Topic, Scope, Name string }
	}
	a.want(http.StatusOK, "GET", "/api/v1/acl", nil, &got)
	if got.File != acl || got.Users != "" || got.Default != "deny" || len(got.Rules) != 2 || got.Rules[1].Scope != "user" || got.Rules[1].Name != "ops" ||
		got.Rules[0].Topic != "devices/${username}/#" || got.Rules[0].Action != "publish" || got.Rules[1].Permission != "deny" {
		t.Fatalf("acl: %+v", got)
	}
	os.WriteFile(acl, []byte("allow nonsense\n"), 0o600)
	a.wantError(http.StatusUnprocessableEntity, "reload_failed", "POST", "/api/v1/acl/reload", nil)
	a.want(http.StatusOK, "GET", "/api/v1/acl", nil, &got)
	if len(got.Rules) != 2 {
		t.Fatalf("after a failed reload: %+v", got)
	}
	os.WriteFile(acl, []byte("allow both #\n"), 0o600)
	a.want(http.StatusOK, "POST", "/api/v1/acl/reload", nil, &got)
	if len(got.Rules) != 1 || got.Rules[0].Action != "both" {
		t.Fatalf("after reload: %+v", got)
	}
}

// TestBans: banning a connected client id disconnects it and refuses its
// next CONNECT (0x8A); lifting the ban lets it in; address bans are
// normalised; bad kinds are refused.
func TestBans(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	cmd, _ := mosquittoSub(t, srv, "-V", "5", "-i", "bad-dev", "-t", "t")
	var page clientPage
	poll(t, "bad-dev connected", func() bool {
		a.want(http.StatusOK, "GET", "/api/v1/clients?client_id=bad-dev&connected=true", nil, &page)
		return len(page.Data) == 1
	})
	a.want(http.StatusCreated, "POST", "/api/v1/bans", map[string]any{"kind": "client_id", "value": "bad-dev", "reason": "test", "duration_seconds": 3600}, nil)
	waitExit(t, cmd)
	out, err := mosquittoPub(t, srv, "-i", "bad-dev", "-t", "t", "-m", "x")
	if err == nil || !strings.Contains(strings.ToLower(out), "banned") {
		t.Fatalf("banned client id connected: %v %q", err, out)
	}
	a.want(http.StatusCreated, "POST", "/api/v1/bans", map[string]any{"kind": "address", "value": "2001:db8:1:2:3::9"}, nil)
	var bans []struct{ Kind, Value, Source, Reason string }
	a.want(http.StatusOK, "GET", "/api/v1/bans", nil, &bans)
	if len(bans) != 2 || bans[0].Kind != "address" || bans[0].Value != "2001:db8:1:2::/64" || bans[1].Value != "bad-dev" || bans[1].Source != "manual" {
		t.Fatalf("bans: %+v", bans)
	}
	a.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/bans", map[string]any{"kind": "host", "value": "x"})
	a.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/bans", map[string]any{"kind": "address", "value": "not-an-ip"})
	a.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/bans", map[string]any{"kind": "client_id", "value": "x", "duration_seconds": -1})
	a.want(http.StatusNoContent, "DELETE", "/api/v1/bans/client_id/bad-dev", nil, nil)
	a.want(http.StatusNoContent, "DELETE", "/api/v1/bans/address/"+url.PathEscape("2001:db8:1:2::/64"), nil, nil)
	a.wantError(http.StatusNotFound, "not_found", "DELETE", "/api/v1/bans/client_id/bad-dev", nil)
	if out, err := mosquittoPub(t, srv, "-i", "bad-dev", "-t", "t", "-m", "x"); err != nil {
		t.Fatalf("after the ban was lifted: %v %s", err, out)
	}
}

// TestRetained: retained messages published by mosquitto_pub are listed
// by filter, read with their payload (topics with empty levels too) and
// deleted; a new subscriber then gets only the other one.
func TestRetained(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	for _, m := range [][2]string{{"r/a", "hello"}, {"r//b", "marker"}} {
		if out, err := mosquittoPub(t, srv, "-r", "-q", "1", "-t", m[0], "-m", m[1]); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	var page struct {
		Data []struct {
			Topic       string `json:"topic"`
			PayloadSize int    `json:"payload_size"`
		} `json:"data"`
		Meta struct{ Count int } `json:"meta"`
	}
	a.want(http.StatusOK, "GET", "/api/v1/retained?topic="+url.QueryEscape("r/#"), nil, &page)
	if page.Meta.Count != 2 || page.Data[0].Topic != "r//b" || page.Data[1].PayloadSize != 5 {
		t.Fatalf("retained: %+v", page)
	}
	var stats struct{ Retained int }
	a.want(http.StatusOK, "GET", "/api/v1/stats", nil, &stats)
	if stats.Retained != 2 {
		t.Fatalf("stats: %d retained, want the 2 clients published ($SYS values left out)", stats.Retained)
	}
	a.want(http.StatusOK, "GET", "/api/v1/retained?topic=r/%23&limit=1&page=2", nil, &page)
	if len(page.Data) != 1 || page.Data[0].Topic != "r/a" {
		t.Fatalf("page 2: %+v", page)
	}
	a.wantError(http.StatusBadRequest, "bad_request", "GET", "/api/v1/retained?topic="+url.QueryEscape("r/#/x"), nil)
	a.wantError(http.StatusBadRequest, "bad_request", "GET", "/api/v1/retained?limit=0", nil)
	var msg struct {
		Topic       string `json:"topic"`
		Payload     []byte `json:"payload"`
		PayloadText string `json:"payload_text"`
	}
	a.want(http.StatusOK, "GET", "/api/v1/retained/"+url.PathEscape("r//b"), nil, &msg)
	if msg.Topic != "r//b" || string(msg.Payload) != "marker" || msg.PayloadText != "marker" {
		t.Fatalf("get: %+v", msg)
	}
	a.want(http.StatusNoContent, "DELETE", "/api/v1/retained/"+url.PathEscape("r/a"), nil, nil)
	a.wantError(http.StatusNotFound, "not_found", "GET", "/api/v1/retained/"+url.PathEscape("r/a"), nil)
	// The topics "." and "..", which a path cannot hold, through the
	// query form.
	for _, tp := range []string{".", ".."} {
		if out, err := mosquittoPub(t, srv, "-r", "-q", "1", "-t", tp, "-m", "dot"+tp); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		q := "/api/v1/retained-message?topic=" + url.QueryEscape(tp)
		a.want(http.StatusOK, "GET", q, nil, &msg)
		if msg.Topic != tp || msg.PayloadText != "dot"+tp {
			t.Fatalf("get %q: %+v", tp, msg)
		}
		a.want(http.StatusNoContent, "DELETE", q, nil, nil)
		a.wantError(http.StatusNotFound, "not_found", "GET", q, nil)
	}
	a.wantError(http.StatusBadRequest, "bad_request", "GET", "/api/v1/retained-message?topic="+url.QueryEscape("r/#"), nil)
	a.wantError(http.StatusBadRequest, "bad_request", "DELETE", "/api/v1/retained-message", nil)
	// A new subscriber gets the retained marker, then a live end marker,
	// and nothing of r/a between.
	_, lines := mosquittoSub(t, srv, "-V", "5", "-i", "late", "-t", "r/#", "-v", "-C", "2")
	var subs struct{ Data []any }
	poll(t, "late subscribed", func() bool {
		a.want(http.StatusOK, "GET", "/api/v1/subscriptions?client_id=late", nil, &subs)
		return len(subs.Data) == 1
	})
	if out, err := mosquittoPub(t, srv, "-q", "1", "-t", "r/zz", "-m", "end"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var got []string
	for l := range lines {
		got = append(got, l)
	}
	if strings.Join(got, "|") != "r//b marker|r/zz end" {
		t.Fatalf("a new subscriber got %q, want the retained marker then the end marker", got)
	}
}
