package auth

import (
	"net"
	"sync"
	"time"
)

// Limiter counts failed logins per source address and per username in a
// fixed window and bans a key that goes over its limit for a while. Its
// memory is bounded: past maxKeys, expired entries are swept and, if that
// is not enough, unbanned entries are forgotten.
type Limiter struct {
	perAddr, perUser int
	window, ban      time.Duration
	maxKeys          int
	now              func() time.Time

	mu    sync.Mutex
	addrs map[string]*failures
	users map[string]*failures
}

type failures struct {
	n           int
	start       time.Time
	bannedUntil time.Time
}

// NewLimiter returns a limiter; a limit of 0 disables that key kind.
func NewLimiter(perAddr, perUser int, window, ban time.Duration) *Limiter {
	return &Limiter{perAddr: perAddr, perUser: perUser, window: window, ban: ban,
		maxKeys: 100_000, now: time.Now,
		addrs: map[string]*failures{}, users: map[string]*failures{}}
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

// Banned reports whether the address or the username is banned now.
func (l *Limiter) Banned(addr, user string) bool {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return bannedLocked(l.addrs, addr, now) || user != "" && bannedLocked(l.users, user, now)
}

func bannedLocked(m map[string]*failures, key string, now time.Time) bool {
	f, ok := m[key]
	return ok && now.Before(f.bannedUntil)
}

// Fail records a failed login and reports whether it caused a new ban.
func (l *Limiter) Fail(addr, user string) (banned bool) {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perAddr > 0 && addr != "" {
		banned = l.failLocked(l.addrs, addr, l.perAddr, now)
	}
	if l.perUser > 0 && user != "" {
		banned = l.failLocked(l.users, user, l.perUser, now) || banned
	}
	return banned
}

func (l *Limiter) failLocked(m map[string]*failures, key string, limit int, now time.Time) bool {
	f, ok := m[key]
	if !ok {
		if len(m) >= l.maxKeys {
			l.sweepLocked(m, now)
		}
		f = &failures{start: now}
		m[key] = f
	}
	if now.Sub(f.start) >= l.window {
		f.n, f.start = 0, now
	}
	f.n++
	if f.n > limit && !now.Before(f.bannedUntil) {
		f.bannedUntil = now.Add(l.ban)
		f.n = 0
		return true
	}
	return false
}

func (l *Limiter) sweepLocked(m map[string]*failures, now time.Time) {
	for k, f := range m {
		if now.Sub(f.start) >= l.window && !now.Before(f.bannedUntil) {
			delete(m, k)
		}
	}
	if len(m) < l.maxKeys {
		return
	}
	for k, f := range m {
		if !now.Before(f.bannedUntil) {
			delete(m, k)
		}
	}
}

// Succeed forgets the failures of a username that logged in.
func (l *Limiter) Succeed(user string) {
	if l == nil || user == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.users[user]; ok && !l.now().Before(f.bannedUntil) {
		delete(l.users, user)
	}
}

// Bans returns the number of addresses and usernames banned now.
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
		if now.Before(f.bannedUntil) {
			users++
		}
	}
	return addrs, users
}
