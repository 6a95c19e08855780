package auth

import (
	"context"
	"crypto/sha256"
	"net"
	"strings"
	"sync"
	"time"
)

// Limiter slows and stops password guessing without letting a guesser
// lock a device out:
//
//   - Per source address, failed logins are counted in a fixed window and
//     an address over its limit is banned (refused before any check) for
//     a while.
//   - Per username, failures are never a ban: past the limit, each further
//     login for that username waits a delay that doubles with every
//     failure (from a second up to maxDelay) before it is checked, whoever
//     sends it. Guesses slow down; the device's right password, from any
//     address, gets in after at most maxDelay. The count is forgotten once
//     a window passes without a failure.
//
// Its memory is bounded: each table holds at most maxKeys entries, and an
// entry keeps a copy of an address or a hash of a username, never the
// bytes of the login that created it (a CONNECT packet).
type Limiter struct {
	perAddr, perUser int
	window, ban      time.Duration
	baseDelay        time.Duration
	maxDelay         time.Duration
	maxKeys          int
	now              func() time.Time

	mu    sync.Mutex
	addrs map[string]*failures
	users map[userKey]*failures
}

// userKey is a username's SHA-256: fixed size whatever the name's length.
type userKey [sha256.Size]byte

type failures struct {
	n           int
	start, last time.Time
	bannedUntil time.Time
}

// NewLimiter returns a limiter; a limit of 0 disables that key kind.
// maxDelay bounds the wait of a username's login (0: one second).
func NewLimiter(perAddr, perUser int, window, ban, maxDelay time.Duration) *Limiter {
	if maxDelay <= 0 {
		maxDelay = time.Second
	}
	return &Limiter{perAddr: perAddr, perUser: perUser, window: window, ban: ban,
		baseDelay: min(time.Second, maxDelay), maxDelay: maxDelay, maxKeys: 100_000, now: time.Now,
		addrs: map[string]*failures{}, users: map[userKey]*failures{}}
}

// addrKey is the IP of a remote address: a source's ports all count.
func addrKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	switch x := a.(type) {
	case *net.TCPAddr:
		return x.IP.String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// Banned reports whether the address is banned now.
func (l *Limiter) Banned(addr string) bool {
	if l == nil || addr == "" {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.addrs[addr]
	return ok && now.Before(f.bannedUntil)
}

// Delay returns how long a login for user must wait before it is checked.
func (l *Limiter) Delay(user string) time.Duration {
	if l == nil || user == "" || l.perUser <= 0 {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.users[sha256.Sum256([]byte(user))]
	if !ok || f.n <= l.perUser || now.Sub(f.last) >= l.window {
		return 0
	}
	d := l.maxDelay
	if shift := f.n - l.perUser - 1; shift < 30 {
		d = min(l.baseDelay<<shift, l.maxDelay)
	}
	return max(0, f.last.Add(d).Sub(now))
}

// Wait waits out user's delay; it returns false, at once, if ctx ends
// before the delay would (the connect timeout): the client may retry.
func (l *Limiter) Wait(ctx context.Context, user string) (waited time.Duration, ok bool) {
	d := l.Delay(user)
	if d <= 0 {
		return 0, true
	}
	if dl, has := ctx.Deadline(); has && time.Until(dl) < d {
		return 0, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return d, true
	case <-ctx.Done():
		return 0, false
	}
}

// Fail records a failed login and reports whether it banned the address.
func (l *Limiter) Fail(addr, user string) (banned bool) {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perAddr > 0 && addr != "" {
		f := entryLocked(l, l.addrs, addr, strings.Clone, now)
		if now.Sub(f.start) >= l.window {
			f.n, f.start = 0, now
		}
		f.n++
		if f.n > l.perAddr && !now.Before(f.bannedUntil) {
			f.bannedUntil = now.Add(l.ban)
			f.n = 0
			banned = true
		}
	}
	if l.perUser > 0 && user != "" {
		f := entryLocked(l, l.users, sha256.Sum256([]byte(user)), nil, now)
		if now.Sub(f.last) >= l.window {
			f.n = 0
		}
		f.n++
		f.last = now
	}
	return banned
}

// entryLocked returns m's entry for key, adding one (with a copy of the key
// made by clone, if any) and making room when m is full.
func entryLocked[K comparable](l *Limiter, m map[K]*failures, key K, clone func(K) K, now time.Time) *failures {
	if f, ok := m[key]; ok {
		return f
	}
	if len(m) >= l.maxKeys {
		evictLocked(l, m, now)
	}
	if clone != nil {
		key = clone(key)
	}
	f := &failures{start: now, last: now}
	m[key] = f
	return f
}

// evictLocked brings a full table down to seven eighths of maxKeys:
// entries whose window has passed and that are not banned go first, then
// unbanned ones, then any. Each pass frees an eighth of the table at
// least, so the sweeps cost O(1) per entry added.
func evictLocked[K comparable](l *Limiter, m map[K]*failures, now time.Time) {
	target := l.maxKeys - l.maxKeys/8 - 1
	passes := []func(*failures) bool{
		func(f *failures) bool { return now.Sub(f.last) >= l.window && !now.Before(f.bannedUntil) },
		func(f *failures) bool { return !now.Before(f.bannedUntil) },
		func(*failures) bool { return true },
	}
	for _, evict := range passes {
		for k, f := range m {
			if len(m) <= target {
				return
			}
			if evict(f) {
				delete(m, k)
			}
		}
	}
}

// Bans returns the number of addresses banned now and of usernames whose
// logins are delayed now.
func (l *Limiter) Bans() (addrs, users int) {
	if l == nil {
		return 0, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.addrs {
		if now.Before(f.bannedUntil) {
			addrs++
		}
	}
	for _, f := range l.users {
		if f.n > l.perUser && now.Sub(f.last) < l.window {
			users++
		}
	}
	return addrs, users
}
