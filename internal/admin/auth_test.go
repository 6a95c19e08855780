package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/config"
)

// TestFirstLoginMustChangePassword: the first start's admin/public may do
// nothing but change its password; a change needs the CSRF header; then
// the account works, and the old password no longer does.
func TestFirstLoginMustChangePassword(t *testing.T) {
	srv := startNode(t, nil)
	c := newClient(t, srv.AdminURL())
	c.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/api/v1/clients", nil)
	c.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "wrong"})
	var probe struct {
		Authenticated bool `json:"authenticated"`
		MustChange    bool `json:"must_change_password"`
	}
	c.want(http.StatusOK, "GET", "/api/v1/session", nil, &probe)
	if probe.Authenticated {
		t.Fatalf("session probe before login: %+v", probe)
	}
	m := c.login("admin", "public")
	c.want(http.StatusOK, "GET", "/api/v1/session", nil, &probe)
	if !probe.Authenticated || !probe.MustChange {
		t.Fatalf("session probe after login: %+v", probe)
	}
	if !m.MustChange || m.Role != "admin" || m.CSRF == "" {
		t.Fatalf("first login: %+v", m)
	}
	c.wantError(http.StatusForbidden, "password_change_required", "GET", "/api/v1/clients", nil)
	c.wantError(http.StatusForbidden, "password_change_required", "GET", "/api/v1/nodes", nil)
	csrf := c.csrf
	c.csrf = ""
	c.wantError(http.StatusForbidden, "csrf_failed", "POST", "/api/v1/me/password", map[string]string{"old_password": "public", "new_password": "n3w-passw0rd"})
	c.csrf = "wrong"
	c.wantError(http.StatusForbidden, "csrf_failed", "POST", "/api/v1/me/password", map[string]string{"old_password": "public", "new_password": "n3w-passw0rd"})
	c.csrf = csrf
	c.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/me/password", map[string]string{"old_password": "public", "new_password": "short"})
	c.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/me/password", map[string]string{"old_password": "public", "new_password": "public"})
	c.want(http.StatusOK, "POST", "/api/v1/me/password", map[string]string{"old_password": "public", "new_password": "n3w-passw0rd"}, &m)
	if m.MustChange {
		t.Fatalf("after the change: %+v", m)
	}
	var nodes []map[string]any
	c.want(http.StatusOK, "GET", "/api/v1/nodes", nil, &nodes)
	if len(nodes) != 1 || nodes[0]["status"] != "running" || !strings.HasPrefix(nodes[0]["admin_url"].(string), "http://127.0.0.1:") {
		t.Fatalf("nodes: %v", nodes)
	}
	c.want(http.StatusNoContent, "POST", "/api/v1/logout", nil, nil)
	c.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/api/v1/nodes", nil)
	d := newClient(t, srv.AdminURL())
	d.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "public"})
	if m := d.login("admin", "n3w-passw0rd"); m.MustChange {
		t.Fatalf("second login: %+v", m)
	}
}

// TestDefaultPasswordSkipsChange: admin.default_password makes a working
// admin account at once, and is kept in data_dir across restarts (read
// only on the first start).
func TestDefaultPasswordSkipsChange(t *testing.T) {
	dir := t.TempDir()
	srv := startNode(t, func(c *config.Config) { c.DataDir = dir; c.Admin.DefaultPassword = "install-pw-1" })
	c := newClient(t, srv.AdminURL())
	if m := c.login("admin", "install-pw-1"); m.MustChange {
		t.Fatalf("%+v", m)
	}
	c.want(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
}

// TestRolesAndAPIKeys: a viewer reads and changes nothing; API keys work
// as Bearer and Basic without CSRF, carry their role, and stop working
// once revoked; account and key listings never show hashes or secrets.
func TestRolesAndAPIKeys(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	a.want(http.StatusCreated, "POST", "/api/v1/accounts", map[string]string{"username": "vera", "password": "viewer-pw-1", "role": "viewer"}, nil)
	a.wantError(http.StatusConflict, "conflict", "POST", "/api/v1/accounts", map[string]string{"username": "vera", "password": "viewer-pw-1", "role": "viewer"})
	a.wantError(http.StatusBadRequest, "bad_request", "POST", "/api/v1/accounts", map[string]string{"username": "x", "password": "viewer-pw-1", "role": "root"})
	a.wantError(http.StatusConflict, "conflict", "DELETE", "/api/v1/accounts/admin", nil)

	v := newClient(t, srv.AdminURL())
	v.login("vera", "viewer-pw-1")
	v.want(http.StatusOK, "GET", "/api/v1/clients", nil, nil)
	v.wantError(http.StatusForbidden, "forbidden", "POST", "/api/v1/clients/x/kick", nil)
	v.wantError(http.StatusForbidden, "forbidden", "GET", "/api/v1/accounts", nil)
	v.wantError(http.StatusForbidden, "forbidden", "POST", "/api/v1/bans", map[string]string{"kind": "client_id", "value": "x"})

	var key struct{ ID, Secret, Key string }
	a.want(http.StatusCreated, "POST", "/api/v1/api-keys", map[string]string{"name": "ci", "role": "admin"}, &key)
	var vkey struct{ Key string }
	a.want(http.StatusCreated, "POST", "/api/v1/api-keys", map[string]string{"name": "grafana", "role": "viewer"}, &vkey)
	_, list := a.call("GET", "/api/v1/api-keys", nil)
	_, accts := a.call("GET", "/api/v1/accounts", nil)
	if strings.Contains(string(list), key.Secret) || strings.Contains(string(list), "hash") || strings.Contains(string(accts), "$2") {
		t.Fatalf("listings leak: %s %s", list, accts)
	}

	s := newClient(t, srv.AdminURL())
	s.key = key.Key
	var m me
	s.want(http.StatusOK, "GET", "/api/v1/me", nil, &m)
	if m.Auth != "api_key" || m.Role != "admin" || m.Username != "ci" {
		t.Fatalf("key me: %+v", m)
	}
	s.wantError(http.StatusNotFound, "not_found", "POST", "/api/v1/clients/nobody/kick", nil) // admin, no CSRF needed
	req, _ := http.NewRequest("GET", srv.AdminURL()+"/api/v1/stats", nil)
	req.SetBasicAuth(key.ID, key.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("basic auth: %v %v", resp, err)
	}
	sv := newClient(t, srv.AdminURL())
	sv.key = vkey.Key
	sv.want(http.StatusOK, "GET", "/api/v1/stats", nil, nil)
	sv.wantError(http.StatusForbidden, "forbidden", "DELETE", "/api/v1/retained/a", nil)
	bad := newClient(t, srv.AdminURL())
	bad.key = key.ID + ":wrong"
	bad.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/api/v1/stats", nil)

	a.want(http.StatusNoContent, "DELETE", "/api/v1/api-keys/"+key.ID, nil, nil)
	s.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/api/v1/stats", nil)
}

// TestLoginsRateLimited: failed logins from one address get it banned by
// admin.rate_limit.per_address, whatever the device logins'
// auth.rate_limit allows (raised behind a proxy, or off); the right
// password then waits for the ban too.
func TestLoginsRateLimited(t *testing.T) {
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-1"
		c.Auth.RateLimit.PerAddress, c.Auth.RateLimit.PerUsername = 0, 0
		c.Admin.RateLimit.PerAddress, c.Admin.RateLimit.PerUsername = 3, 0
	})
	c := newClient(t, srv.AdminURL())
	for range 4 {
		c.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "guess"})
	}
	c.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "admin-pw-1"})
}

// TestAdminLoginLimitOnByDefault: with the defaults, a dashboard login is
// banned once over admin.rate_limit.per_address (10) failures even though the
// device logins' auth.rate_limit.per_address was raised far above it, as
// the operator behind a proxy is told to; a wrong API key counts as well.
func TestAdminLoginLimitOnByDefault(t *testing.T) {
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-1"
		c.Auth.RateLimit.PerAddress, c.Auth.RateLimit.PerUsername = 100000, 0
		c.Admin.RateLimit.PerUsername = 0 // no delays: count the address only
	})
	c := newClient(t, srv.AdminURL())
	for range 10 {
		c.wantError(http.StatusUnauthorized, "unauthorized", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "guess"})
	}
	k := newClient(t, srv.AdminURL())
	k.key = "ck_nothing:guess"
	k.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/api/v1/stats", nil)
	k.wantError(http.StatusTooManyRequests, "too_many_requests", "GET", "/api/v1/stats", nil)
	c.wantError(http.StatusTooManyRequests, "too_many_requests", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "admin-pw-1"})
}

// TestAPIKeysFollowTheirAccount: an API key never has more rights than
// the account that created it has now (keys made by a key belong to the
// same account): demoting the account makes its admin keys read-only,
// deleting it revokes them, even once an account of the same name exists
// again.
func TestAPIKeysFollowTheirAccount(t *testing.T) {
	srv := startNode(t, func(c *config.Config) { c.Admin.DefaultPassword = "admin-pw-1" })
	a := adminClient(t, srv, "admin-pw-1")
	a.want(http.StatusCreated, "POST", "/api/v1/accounts", map[string]string{"username": "ops", "password": "ops-pw-123", "role": "admin"}, nil)
	o := newClient(t, srv.AdminURL())
	o.login("ops", "ops-pw-123")
	var key, sub struct{ ID, Key string }
	o.want(http.StatusCreated, "POST", "/api/v1/api-keys", map[string]string{"name": "ops-ci", "role": "admin"}, &key)
	k := newClient(t, srv.AdminURL())
	k.key = key.Key
	k.want(http.StatusCreated, "POST", "/api/v1/api-keys", map[string]string{"name": "ops-sub", "role": "admin"}, &sub)
	ks := newClient(t, srv.AdminURL())
	ks.key = sub.Key
	for _, c := range []*apiClient{k, ks} {
		c.wantError(http.StatusNotFound, "not_found", "POST", "/api/v1/clients/nobody/kick", nil)
	}

	a.want(http.StatusOK, "PUT", "/api/v1/accounts/ops", map[string]string{"role": "viewer"}, nil)
	for _, c := range []*apiClient{k, ks} {
		var m me
		c.want(http.StatusOK, "GET", "/api/v1/me", nil, &m)
		if m.Role != "viewer" {
			t.Errorf("key of a demoted account: role %q, want viewer", m.Role)
		}
		c.wantError(http.StatusForbidden, "forbidden", "POST", "/api/v1/clients/nobody/kick", nil)
		c.wantError(http.StatusForbidden, "forbidden", "POST", "/api/v1/api-keys", map[string]string{"name": "again", "role": "admin"})
	}

	a.want(http.StatusNoContent, "DELETE", "/api/v1/accounts/ops", nil, nil)
	a.want(http.StatusCreated, "POST", "/api/v1/accounts", map[string]string{"username": "ops", "password": "ops-pw-456", "role": "admin"}, nil)
	for _, c := range []*apiClient{k, ks} {
		c.wantError(http.StatusUnauthorized, "unauthorized", "GET", "/api/v1/stats", nil)
	}
	var keys []struct{ ID string }
	a.want(http.StatusOK, "GET", "/api/v1/api-keys", nil, &keys)
	if len(keys) != 0 {
		t.Errorf("keys of a deleted account still listed: %+v", keys)
	}
}
