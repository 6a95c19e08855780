package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"golang.org/x/crypto/bcrypt"
)

func hashFor(t testing.TB, pw string) string {
	t.Helper()
	h, err := HashBcrypt(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testUsers(t testing.TB, pairs ...string) *Users {
	t.Helper()
	u := NewUsers()
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := u.Put(&User{Name: pairs[i], Hash: hashFor(t, pairs[i+1])}); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

func login(user, pw string) *Request {
	return &Request{ClientID: user, Username: user, Password: []byte(pw), HasUsername: true, HasPassword: true,
		Remote: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}}
}

func init() { argonTime, argonMemory, scramIterations = 1, 1<<10, 64 } // cheap hashes for tests

func TestUsersFileRoundTrip(t *testing.T) {
	u := testUsers(t, "dev-1", "s1", "dev 2", "s2")
	argon, err := HashArgon2id("s3")
	if err != nil {
		t.Fatal(err)
	}
	scram, err := NewSCRAMCreds("s3")
	if err != nil {
		t.Fatal(err)
	}
	u.Put(&User{Name: "admin", Hash: argon, Superuser: true, SCRAM: scram})
	path := filepath.Join(t.TempDir(), "users")
	if err := SaveUsers(path, u); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	got, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	u.WriteTo(&a)
	got.WriteTo(&b)
	if a.String() != b.String() || got.Len() != 3 {
		t.Fatalf("round trip:\n%s\n%s", a.String(), b.String())
	}
	adm, _ := got.Get("admin")
	if !adm.Superuser || adm.SCRAM != scram {
		t.Error("attributes lost")
	}
	for name, pw := range map[string]string{"dev-1": "s1", "dev 2": "s2", "admin": "s3"} {
		x, _ := got.Get(name)
		if ok, err := VerifyPassword(x.Hash, []byte(pw)); !ok || err != nil {
			t.Errorf("verify %s: %v %v", name, ok, err)
		}
		if ok, _ := VerifyPassword(x.Hash, []byte(pw+"x")); ok {
			t.Errorf("verify %s with a wrong password succeeded", name)
		}
	}
	if !got.Delete("dev-1") || got.Delete("dev-1") || got.Len() != 2 {
		t.Error("Delete")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestParseUsersErrors(t *testing.T) {
	for _, text := range []string{
		"nohash\n",
		"a:\n",
		"a:$1$md5\n",
		"a:$2a$04$x frobnicate\n",
		"a:$2a$04$x\na:$2a$04$y\n",
		"a:$2a$04$x scram=nope\n",
	} {
		if _, err := ParseUsers(strings.NewReader(text)); err == nil {
			t.Errorf("ParseUsers(%q) succeeded", text)
		}
	}
	if err := NewUsers().Put(&User{Name: "a:b"}); err == nil {
		t.Error("a name with ':' was accepted")
	}
}

func TestUserAuth(t *testing.T) {
	a := NewUserAuth(testUsers(t, "dev-1", "s1"), 2, time.Hour)
	ctx := context.Background()
	res, err := a.Authenticate(ctx, login("dev-1", "s1"))
	if err != nil || res.Verdict != Allow || res.Username != "dev-1" {
		t.Fatalf("good login: %+v %v", res, err)
	}
	if res, _ := a.Authenticate(ctx, login("dev-1", "bad")); res.Verdict != Deny {
		t.Error("bad password allowed")
	}
	if res, _ := a.Authenticate(ctx, login("nobody", "s1")); res.Verdict != Ignore {
		t.Error("unknown user not left to the next backend")
	}
	r := login("dev-1", "")
	r.HasPassword = false
	if res, _ := a.Authenticate(ctx, r); res.Verdict != Deny {
		t.Error("missing password allowed")
	}
	hashes, _ := a.Stats()
	for range 5 {
		a.Authenticate(ctx, login("dev-1", "s1"))
	}
	if h, hits := a.Stats(); h != hashes || hits != 5 {
		t.Errorf("cache: hashes %d->%d, hits %d", hashes, h, hits)
	}
	// A wrong password is never answered from the cache.
	if res, _ := a.Authenticate(ctx, login("dev-1", "s1x")); res.Verdict != Deny {
		t.Error("cache answered a wrong password")
	}
	// A changed password invalidates the cache.
	a.SetUsers(testUsers(t, "dev-1", "s2"))
	if res, _ := a.Authenticate(ctx, login("dev-1", "s1")); res.Verdict != Deny {
		t.Error("old password still allowed after passwd")
	}
	a.SetUsers(NewUsers())
	if res, _ := a.Authenticate(ctx, login("dev-1", "s2")); res.Verdict != Ignore {
		t.Error("removed user still known")
	}
}

func TestUserAuthBoundedConcurrency(t *testing.T) {
	a := NewUserAuth(testUsers(t, "d", "p"), 1, 0)
	a.sem <- struct{}{} // hold the only slot
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := a.Authenticate(ctx, login("d", "p")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a slot: %v", err)
	}
	<-a.sem
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if res, err := a.Authenticate(context.Background(), login("d", "p")); res.Verdict != Allow {
				t.Errorf("login: %+v %v", res, err)
			}
		})
	}
	wg.Wait()
}

func TestLimiterBansAddressesAndSlowsUsernames(t *testing.T) {
	l := NewLimiter(3, 2, time.Minute, 5*time.Minute, 8*time.Second)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	if l.Fail("ip", "u") || l.Fail("ip", "u") || l.Delay("u") != 0 {
		t.Fatal("slowed or banned too early")
	}
	// Over the username's limit: a delay that doubles, from any address,
	// never a ban.
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		l.Fail("ip"+string(rune('a'+i)), "u")
		if d := l.Delay("u"); d != want {
			t.Fatalf("after %d failures: delay %v, want %v", 3+i, d, want)
		}
	}
	now = now.Add(3 * time.Second)
	if d := l.Delay("u"); d != 5*time.Second {
		t.Errorf("3s after the last failure: delay %v, want 5s", d)
	}
	if l.Banned("other") || l.Delay("v") != 0 {
		t.Fatal("unrelated key limited")
	}
	// The address: banned over its limit.
	l.Fail("ip", "v")
	if !l.Fail("ip", "v") || !l.Banned("ip") {
		t.Fatal("address not banned after 4 failures over a limit of 3")
	}
	if a, u := l.Bans(); a != 1 || u != 1 {
		t.Errorf("Bans() = %d, %d", a, u)
	}
	now = now.Add(5 * time.Minute)
	if l.Banned("ip") || l.Delay("u") != 0 {
		t.Fatal("ban or delay outlived its duration")
	}
	// Failures spread over windows do not add up.
	for range 10 {
		if l.Fail("slow", "slow") || l.Delay("slow") != 0 {
			t.Fatal("slow failures limited")
		}
		now = now.Add(61 * time.Second)
	}
}

// TestLimiterSerialisesLogins: a slowed username's logins take turns a
// delay step apart (a login let through pushes the next turn), one login
// may wait for the turn, and a second is refused at once.
func TestLimiterSerialisesLogins(t *testing.T) {
	l := NewLimiter(0, 1, time.Minute, time.Minute, 4*time.Second)
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l.Fail("", "u")
	l.Fail("", "u") // over the limit of 1: one second between checks
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if w, err := l.Wait(context.Background(), "u"); w != 0 || err != nil {
		t.Fatalf("the login whose turn it is: waited %v, %v", w, err)
	}
	if d := l.Delay("u"); d != time.Second {
		t.Fatalf("right after a login was let through: delay %v, want 1s", d)
	}
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := l.Wait(short, "u"); !errors.Is(err, errLoginTimeout) {
		t.Errorf("a login whose connect timeout ends before its turn: %v", err)
	}
	// The clock stands still: a waiting login waits until cancelled.
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := l.Wait(ctx, "u"); done <- err }()
	waiting := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.users[sha256.Sum256([]byte("u"))].waiting
	}
	for deadline := time.Now().Add(5 * time.Second); waiting() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first login does not wait")
		}
	}
	if _, err := l.Wait(context.Background(), "u"); !errors.Is(err, errLoginQueued) {
		t.Errorf("a second login while one waits: %v, want refused at once", err)
	}
	if l.Wait(context.Background(), "other"); waiting() != 1 {
		t.Error("another username's login touched the queue")
	}
	stop()
	if err := <-done; !errors.Is(err, errLoginTimeout) {
		t.Errorf("the cancelled waiting login: %v", err)
	}
	if n := waiting(); n != 0 {
		t.Errorf("%d logins still counted as waiting", n)
	}
}

// TestAddrKeyIPv6Prefix: the addresses of one IPv6 /64 are one address for
// bans; IPv4 (mapped or not) keeps its own address.
func TestAddrKeyIPv6Prefix(t *testing.T) {
	tcp := func(s string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(s), Port: 1883} }
	for _, tt := range []struct {
		addr net.Addr
		want string
	}{
		{tcp("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64"},
		{tcp("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1:2"), Zone: "eth0"}, "fe80::/64"},
		{tcp("192.0.2.7"), "192.0.2.7"},
		{tcp("::ffff:192.0.2.7"), "192.0.2.7"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8:1:3::9"), Port: 9}, "2001:db8:1:3::/64"},
		{(*net.TCPAddr)(nil), ""},
		{nil, ""},
	} {
		if got := addrKey(tt.addr); got != tt.want {
			t.Errorf("addrKey(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	l := NewLimiter(2, 0, time.Minute, time.Minute, time.Second)
	for i := range 3 {
		l.Fail(addrKey(tcp(fmt.Sprintf("2001:db8:1:2::%x", i+1))), "")
	}
	if !l.Banned(addrKey(tcp("2001:db8:1:2:abcd::1"))) {
		t.Error("three addresses of one /64 over a limit of 2: the prefix is not banned")
	}
	if l.Banned(addrKey(tcp("2001:db8:1:3::1"))) {
		t.Error("the next /64 is banned too")
	}
}

func TestLimiterBounded(t *testing.T) {
	l := NewLimiter(1, 1, time.Minute, time.Minute, time.Second)
	l.maxKeys = 100
	for i := range 1000 {
		l.Fail(net.IPv4(10, 0, byte(i>>8), byte(i)).String(), fmt.Sprint("user-", i))
	}
	l.mu.Lock()
	a, u := len(l.addrs), len(l.users)
	l.mu.Unlock()
	if a > 100 || u > 100 {
		t.Errorf("%d addresses and %d usernames kept, bound 100", a, u)
	}
}

func TestChain(t *testing.T) {
	users := NewUserAuth(testUsers(t, "dev-1", "s1"), 0, 0)
	lim := NewLimiter(0, 3, time.Minute, time.Minute, time.Second)
	stats := new(Stats)
	c := NewChain([]Authenticator{users}, false, lim, nil, stats)
	ctx := context.Background()
	id, err := c.Authenticate(ctx, login("dev-1", "s1"))
	if err != nil || id.Username != "dev-1" || id.Anonymous || id.Backend != "users" {
		t.Fatalf("login: %+v %v", id, err)
	}
	if _, err := c.Authenticate(ctx, login("dev-9", "x")); !errors.Is(err, packet.ErrBadUsernameOrPassword) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := c.Authenticate(ctx, &Request{ClientID: "anon"}); !errors.Is(err, packet.ErrNotAuthorized) {
		t.Errorf("anonymous with anonymous off: %v", err)
	}
	anon := NewChain([]Authenticator{users}, true, nil, nil, nil)
	if id, err := anon.Authenticate(ctx, &Request{ClientID: "anon"}); err != nil || !id.Anonymous {
		t.Errorf("anonymous with anonymous on: %+v %v", id, err)
	}
	if _, err := anon.Authenticate(ctx, login("dev-9", "x")); err == nil {
		t.Error("unknown credentials became anonymous")
	}
	// Brute force: the username's logins are slowed, not refused: the right
	// password still gets in, after the delay.
	lim.baseDelay, lim.maxDelay = 300*time.Millisecond, 300*time.Millisecond
	for range 4 {
		c.Authenticate(ctx, login("dev-1", "guess"))
	}
	if _, err := c.Authenticate(ctx, login("dev-1", "s1")); err != nil {
		t.Errorf("after brute force: %v", err)
	}
	if stats.Throttled.Load() != 1 {
		t.Errorf("%d logins slowed, want 1", stats.Throttled.Load())
	}
	if stats.NewBans.Load() != 0 || stats.Banned.Load() != 0 {
		t.Errorf("stats: bans %d, banned logins %d, want none", stats.NewBans.Load(), stats.Banned.Load())
	}
}
