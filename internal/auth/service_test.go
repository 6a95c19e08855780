package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestNewValidation(t *testing.T) {
	for name, mod := range map[string]func(*config.Auth){
		"acl default":  func(c *config.Auth) { c.ACLDefault = "maybe" },
		"v3 policy":    func(c *config.Auth) { c.V3DeniedPublish = "shout" },
		"on error":     func(c *config.Auth) { c.HTTP.OnError = "allow" },
		"backend":      func(c *config.Auth) { c.Backends = "users,ldap" },
		"window":       func(c *config.Auth) { c.RateLimit.Window = 0 },
		"short secret": func(c *config.Auth) { c.Backends = "jwt"; c.JWT.SecretFile = writeTemp(t, "short") },
		"missing ca":   func(c *config.Auth) { c.Backends = "cert"; c.Cert.CAFile = "/nonexistent/ca.pem" },
		"bad acl file": func(c *config.Auth) { c.ACLFile = writeTemp(t, "allow jump x\n") },
		"bad users":    func(c *config.Auth) { c.UsersFile = writeTemp(t, "nohash\n") },
		"missing key":  func(c *config.Auth) { c.Backends = "jwt"; c.JWT.PublicKeyFile = "/nonexistent/k.pem" },
		"missing acl":  func(c *config.Auth) { c.ACLFile = "/nonexistent/acl" },
	} {
		cfg := config.Default().Auth
		mod(&cfg)
		if s, err := New(cfg, nil); err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
	// The defaults make a working, open service.
	s, err := New(config.Default().Auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, err := s.Authenticate(context.Background(), login("anyone", "x"))
	if err != nil || !id.Anonymous || !s.ACL().Check(id, Publish, "a/b") {
		t.Errorf("defaults: %+v %v", id, err)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(content)
	f.Close()
	return f.Name()
}

// poll waits for cond with a deadline.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherReloads(t *testing.T) {
	svc, usersFile := testService(t, "allow both a/#\n", func(c *config.Auth) { c.WatchInterval = 10 * time.Millisecond }, "u1", "p1")
	ctx := context.Background()
	u, _ := LoadUsers(usersFile)
	u.Put(&User{Name: "u2", Hash: hashFor(t, "p2")})
	if err := SaveUsers(usersFile, u); err != nil {
		t.Fatal(err)
	}
	poll(t, "the new user", func() bool { _, err := svc.Authenticate(ctx, login("u2", "p2")); return err == nil })
	id := &Identity{Username: "u1", ClientID: "u1"}
	os.WriteFile(svc.cfg.ACLFile, []byte("allow both b/#\n"), 0o600)
	poll(t, "the new ACL", func() bool { return svc.ACL().Check(id, Publish, "b/x") })
	// A broken file keeps the previous version.
	os.WriteFile(svc.cfg.ACLFile, []byte("allow both b/#\nallow jump c\n"), 0o600)
	if err := svc.Reload(); err == nil {
		t.Error("Reload of a broken ACL succeeded")
	}
	if !svc.ACL().Check(id, Publish, "b/x") {
		t.Error("broken ACL replaced the previous one")
	}
}

func TestBackendOutageIsNotABan(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", 503) }))
	defer srv.Close()
	lim := NewLimiter(1, 1, time.Minute, time.Minute, time.Second)
	c := NewChain([]Authenticator{&Webhook{URL: srv.URL, Timeout: time.Second}}, false, lim, nil, nil)
	for range 3 {
		if _, err := c.Authenticate(context.Background(), login("dev-1", "s1")); !errors.Is(err, packet.ErrServerUnavailable) {
			t.Fatalf("outage: %v, want server unavailable", err)
		}
	}
	if a, u := lim.Bans(); a+u != 0 {
		t.Errorf("an outage banned %d addresses and %d users", a, u)
	}
}

func TestChainOrder(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	tok := signJWT(t, "HS256", "", secret, map[string]any{"sub": "dev-1", "exp": time.Now().Unix() + 60})
	users := NewUserAuth(testUsers(t, "dev-1", "s1"), 0, 0)
	jwt := &JWT{Secret: secret}
	ctx := context.Background()
	// dev-1 is in the users file, so a users backend placed first denies
	// the token as a wrong password: order matters.
	if _, err := NewChain([]Authenticator{users, jwt}, false, nil, nil, nil).Authenticate(ctx, login("dev-1", tok)); err == nil {
		t.Error("users first: the JWT was accepted as dev-1's password")
	}
	id, err := NewChain([]Authenticator{jwt, users}, false, nil, nil, nil).Authenticate(ctx, login("dev-1", tok))
	if err != nil || id.Backend != "jwt" {
		t.Errorf("jwt first: %+v %v", id, err)
	}
	id, err = NewChain([]Authenticator{jwt, users}, false, nil, nil, nil).Authenticate(ctx, login("dev-1", "s1"))
	if err != nil || id.Backend != "users" {
		t.Errorf("jwt ignores a plain password: %+v %v", id, err)
	}
}

// TestUnknownUserCostsAHash: a login that no backend knows is refused only
// after the hash check a known user's wrong password costs, so that timing
// does not tell which usernames exist; a login another backend accepts
// does not pay for it.
func TestUnknownUserCostsAHash(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	users := NewUserAuth(testUsers(t, "dev-1", "s1"), 0, 0)
	chain := NewChain([]Authenticator{users, &JWT{Secret: secret}}, false, nil, nil, nil)
	ctx := context.Background()
	hashes := func() int64 { h, _ := users.Stats(); return h }

	if _, err := chain.Authenticate(ctx, login("dev-1", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	if h := hashes(); h != 1 {
		t.Fatalf("known user, wrong password: %d hashes, want 1", h)
	}
	if _, err := chain.Authenticate(ctx, login("nobody", "guess")); err == nil {
		t.Fatal("unknown user accepted")
	}
	if h := hashes(); h != 2 {
		t.Fatalf("unknown user: %d hashes in all, want 2 (one decoy)", h)
	}
	tok := signJWT(t, "HS256", "", secret, map[string]any{"sub": "dev-2", "exp": time.Now().Unix() + 60})
	if id, err := chain.Authenticate(ctx, login("dev-2", tok)); err != nil || id.Backend != "jwt" {
		t.Fatalf("JWT login: %+v %v", id, err)
	}
	if h := hashes(); h != 2 {
		t.Fatalf("a JWT login cost %d hashes, want none", h-2)
	}
}

// verdictBackend answers every login with one verdict, or fails.
type verdictBackend struct {
	v   Verdict
	err error
}

func (b verdictBackend) Name() string { return "fixed" }

func (b verdictBackend) Authenticate(context.Context, *Request) (Result, error) {
	return Result{Verdict: b.v}, b.err
}

// TestRefusalCostsOneHashInAnyOrder: whatever order the backends are in
// and whichever refuses, a refused login with a password costs exactly one
// hash check, whether its username is in the users file or not, so that
// timing cannot tell the two apart. Counted, not timed.
func TestRefusalCostsOneHashInAnyOrder(t *testing.T) {
	others := map[string]Authenticator{
		"deny":  verdictBackend{v: Deny},
		"fail":  verdictBackend{err: errors.New("webhook down")},
		"pass":  verdictBackend{v: Ignore},
		"jwt":   &JWT{Secret: []byte(strings.Repeat("k", 32))},
		"allow": nil, // no second backend
	}
	ctx := context.Background()
	for name, other := range others {
		for _, usersFirst := range []bool{true, false} {
			users := NewUserAuth(testUsers(t, "dev-1", "s1"), 0, 0)
			backends := []Authenticator{users}
			if other != nil {
				backends = append(backends, other)
				if !usersFirst {
					backends = []Authenticator{other, users}
				}
			}
			chain := NewChain(backends, false, nil, nil, nil)
			for _, user := range []string{"dev-1", "nobody"} {
				before, _ := users.Stats()
				if _, err := chain.Authenticate(ctx, login(user, "wrong")); err == nil {
					t.Fatalf("%s users-first=%v: %s with a wrong password accepted", name, usersFirst, user)
				}
				if after, _ := users.Stats(); after-before != 1 {
					t.Errorf("%s users-first=%v: refusing %s cost %d hashes, want 1", name, usersFirst, user, after-before)
				}
			}
		}
	}
}

// lockedBuffer is a log sink that goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestUnreadableFilesAreLoggedAndCounted: a users or ACL file the broker
// cannot read (here: replaced by a directory, which even root cannot read
// as a file) is an error in the log and in Stats.ReloadFailures, once per
// change the watcher sees; the previous users and rules stay in force.
func TestUnreadableFilesAreLoggedAndCounted(t *testing.T) {
	base, usersFile := testService(t, "allow both a/#\n", nil, "u1", "p1")
	var logs lockedBuffer
	cfg := base.cfg
	cfg.WatchInterval = 5 * time.Millisecond
	svc, err := New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	dir, target := t.TempDir(), t.TempDir()
	for i, file := range []string{usersFile, cfg.ACLFile} {
		// Replaced in one step (a link to a directory renamed over it):
		// the watcher sees no missing file in between.
		link := filepath.Join(dir, "link")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(link, file); err != nil {
			t.Fatal(err)
		}
		poll(t, "the failure to be counted", func() bool { return svc.Stats().ReloadFailures.Load() == int64(i+1) })
	}
	if err := svc.Reload(); err == nil {
		t.Error("Reload with both files unreadable succeeded")
	}
	if n := svc.Stats().ReloadFailures.Load(); n != 4 {
		t.Errorf("ReloadFailures = %d, want 4 (two watched changes, two reloads)", n)
	}
	for _, want := range []string{"level=ERROR msg=\"auth: users file not loaded", "level=ERROR msg=\"auth: ACL file not loaded"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if _, err := svc.Authenticate(context.Background(), login("u1", "p1")); err != nil {
		t.Errorf("the previous users were dropped: %v", err)
	}
	if !svc.ACL().Check(&Identity{Username: "u1"}, Publish, "a/x") {
		t.Error("the previous rules were dropped")
	}
}

// TestRemovedUsersFileKeepsUsers: a users file that disappears while the
// broker runs (a tool that removes it before writing it again) is a
// failed reload: the users stay, nobody is disconnected. An empty file
// removes them.
func TestRemovedUsersFileKeepsUsers(t *testing.T) {
	base, usersFile := testService(t, "allow both a/#\n", nil, "u1", "p1")
	cfg := base.cfg
	cfg.WatchInterval = 5 * time.Millisecond
	svc, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := os.Remove(usersFile); err != nil {
		t.Fatal(err)
	}
	poll(t, "the missing file to be counted", func() bool { return svc.Stats().ReloadFailures.Load() == 1 })
	if _, err := svc.Authenticate(context.Background(), login("u1", "p1")); err != nil {
		t.Fatalf("the users were dropped with their file: %v", err)
	}
	if err := os.WriteFile(usersFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	poll(t, "the empty file to remove the users", func() bool {
		_, err := svc.Authenticate(context.Background(), login("u1", "p1"))
		return err != nil
	})
}
