package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// UserAuth authenticates against the users file. Password hashes run at
// most MaxConcurrent at a time, and a verified password is remembered (as
// an HMAC under a per-process key, never in clear) for CacheTTL, so that a
// reconnect storm costs one hash per device at most.
type UserAuth struct {
	users atomic.Pointer[Users]
	sem   chan struct{}
	ttl   time.Duration
	key   [32]byte
	now   func() time.Time

	hashes    atomic.Int64
	cacheHits atomic.Int64

	mu    sync.Mutex
	cache map[string]verified // by user name
}

type verified struct {
	hash    string // the users-file hash the password was checked against
	mac     [32]byte
	expires time.Time
}

// NewUserAuth returns a users-file backend over u. maxConcurrent <= 0
// means half the CPUs (at least one), which leaves the other half to
// routing during a storm (docs/security.md); ttl 0 disables the cache.
func NewUserAuth(u *Users, maxConcurrent int, ttl time.Duration) *UserAuth {
	if maxConcurrent <= 0 {
		maxConcurrent = max(1, runtime.GOMAXPROCS(0)/2)
	}
	a := &UserAuth{sem: make(chan struct{}, maxConcurrent), ttl: ttl, now: time.Now,
		cache: map[string]verified{}}
	rand.Read(a.key[:])
	a.users.Store(u)
	return a
}

// Name implements Authenticator.
func (a *UserAuth) Name() string { return "users" }

// Users returns the current users.
func (a *UserAuth) Users() *Users { return a.users.Load() }

// SetUsers replaces the users (a reload). Cached verifications of changed
// or removed users no longer match and are dropped.
func (a *UserAuth) SetUsers(u *Users) {
	a.users.Store(u)
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, v := range a.cache {
		if x, ok := u.Get(name); !ok || x.Hash != v.hash {
			delete(a.cache, name)
		}
	}
}

// Stats returns how many hashes were computed and how many logins the
// cache answered.
func (a *UserAuth) Stats() (hashes, cacheHits int64) {
	return a.hashes.Load(), a.cacheHits.Load()
}

// Authenticate implements Authenticator: an unknown user is left to the
// next backend; a known user with a wrong or missing password is denied.
func (a *UserAuth) Authenticate(ctx context.Context, r *Request) (Result, error) {
	if !r.HasUsername {
		return Result{}, nil
	}
	u, ok := a.users.Load().Get(r.Username)
	if !ok {
		return Result{}, nil
	}
	allow := Result{Verdict: Allow, Username: u.Name, Superuser: u.Superuser, credential: u.Hash}
	if !r.HasPassword {
		return Result{Verdict: Deny}, nil
	}
	mac := a.mac(r.Password)
	if a.cached(u, mac) {
		a.cacheHits.Add(1)
		return allow, nil
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return Result{}, fmt.Errorf("users: waiting to hash: %w", ctx.Err())
	}
	good, err := a.verify(u.Hash, r.Password)
	<-a.sem
	if err != nil {
		return Result{hashed: true}, fmt.Errorf("users: user %q: %w", u.Name, err)
	}
	if !good {
		return Result{Verdict: Deny, Code: packet.ErrBadUsernameOrPassword, hashed: true}, nil
	}
	a.remember(u, mac)
	allow.hashed = true
	return allow, nil
}

func (a *UserAuth) verify(hash string, password []byte) (bool, error) {
	a.hashes.Add(1)
	return VerifyPassword(hash, password)
}

// decoy spends on a refused login that this backend did not hash the
// password of the hash check a known user's wrong password costs (against
// the file's first user, result ignored), so that the time a refusal takes
// does not tell which usernames exist, whatever backend refused it and
// whatever the backends' order. The chain calls it only for refusals: a
// login that another backend accepts (a JWT) never pays for it.
func (a *UserAuth) decoy(ctx context.Context, password []byte) {
	u, ok := a.users.Load().first()
	if !ok {
		return
	}
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	a.verify(u.Hash, password)
	<-a.sem
}

func (a *UserAuth) mac(password []byte) [32]byte {
	h := hmac.New(sha256.New, a.key[:])
	h.Write(password)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (a *UserAuth) cached(u *User, mac [32]byte) bool {
	if a.ttl <= 0 {
		return false
	}
	a.mu.Lock()
	v, ok := a.cache[u.Name]
	a.mu.Unlock()
	return ok && v.hash == u.Hash && a.now().Before(v.expires) && hmac.Equal(v.mac[:], mac[:])
}

func (a *UserAuth) remember(u *User, mac [32]byte) {
	if a.ttl <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Only users of the current file are cached, so the map is bounded by it.
	if cur, ok := a.users.Load().Get(u.Name); ok && cur.Hash == u.Hash {
		a.cache[u.Name] = verified{hash: u.Hash, mac: mac, expires: a.now().Add(a.ttl)}
	}
}
