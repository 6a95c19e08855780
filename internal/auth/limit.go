package auth

import (
	"context"
	"crypto/sha256"
	"errors"
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
//     a while. An IPv6 address counts as its /64: one host's prefix is one
//     address.
//   - Per username, failures are never a ban: past the limit, the logins
//     for that username, whoever sends them, are checked one at a time, a
//     delay apart that doubles with every failure (from a second up to
//     maxDelay). Each login let through pushes the username's next allowed
//     time one delay forward; one login at a time may wait for that time,
//     and a login that finds one already waiting is refused at once (the
//     client may retry). Guesses slow down to one per delay however many
//     connections make them; the device's right password, from any
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
	// A slowed username: when its next login may be checked, and how many
	// logins wait for that.
	next    time.Time
	waiting int
}

// maxWaiters is how many logins may wait for a slowed username's turn; one
// more is refused at once, so that waiting logins (each a connection and
// its CONNECT) stay bounded per username.
const maxWaiters = 1

// Why Wait refused a login; both are answered 0x89 server busy.
var (
	errLoginQueued  = errors.New("another login for the username is waiting")
	errLoginTimeout = errors.New("the connect timeout ends before the login's turn")
)

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

// addrKey is the IP of a remote address: a source's ports all count, and
// an IPv6 address counts as its /64 prefix (a host usually has a whole
// /64 to pick addresses from).
func addrKey(a net.Addr) string {
	var ip net.IP
	switch x := a.(type) {
	case nil:
		return ""
	case *net.TCPAddr:
		if x == nil {
			return ""
		}
		ip = x.IP
	}
	if ip == nil {
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			host = a.String()
		}
		if ip = net.ParseIP(host); ip == nil {
			return host
		}
	}
	return ipKey(ip)
}

// ipKey is an IPv4 address, or an IPv6 address's /64 prefix.
func ipKey(ip net.IP) string {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
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

// Delay returns how long a login for user arriving now would wait before
// it is checked (if it is not refused because another one waits).
func (l *Limiter) Delay(user string) time.Duration {
	if l == nil || user == "" || l.perUser <= 0 {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.users[sha256.Sum256([]byte(user))]
	if !ok {
		return 0
	}
	at, step := l.turnLocked(f, now)
	if step == 0 {
		return 0
	}
	return max(0, at.Sub(now))
}

// turnLocked returns the delay step between the checked logins of f's
// username (0: it is not slowed) and the time its next login may be
// checked: a step after the last failure, and after the last login let
// through.
func (l *Limiter) turnLocked(f *failures, now time.Time) (at time.Time, step time.Duration) {
	if f.n <= l.perUser || now.Sub(f.last) >= l.window {
		return time.Time{}, 0
	}
	step = l.maxDelay
	if shift := f.n - l.perUser - 1; shift < 30 {
		step = min(l.baseDelay<<shift, l.maxDelay)
	}
	at = f.last.Add(step)
	if f.next.After(at) {
		at = f.next
	}
	return at, step
}

// Wait waits for the turn of a login for user, if the username is slowed,
// and takes it: the next login is then due a delay step later. It refuses
// the login at once (errLoginQueued) when another login for user already
// waits, and (errLoginTimeout) when ctx would end first (the connect
// timeout): the client may retry.
func (l *Limiter) Wait(ctx context.Context, user string) (waited time.Duration, err error) {
	if l == nil || user == "" || l.perUser <= 0 {
		return 0, nil
	}
	start := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.users[sha256.Sum256([]byte(user))]
	if !ok {
		return 0, nil
	}
	if _, step := l.turnLocked(f, start); step == 0 {
		return 0, nil
	}
	if f.waiting >= maxWaiters {
		return 0, errLoginQueued
	}
	f.waiting++
	defer func() { f.waiting-- }()
	for {
		now := l.now()
		at, step := l.turnLocked(f, now)
		if step == 0 || !at.After(now) {
			if step > 0 {
				f.next = now.Add(step)
			}
			return now.Sub(start), nil
		}
		if dl, has := ctx.Deadline(); has && time.Until(dl) < at.Sub(now) {
			return 0, errLoginTimeout
		}
		l.mu.Unlock()
		t := time.NewTimer(at.Sub(now))
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		l.mu.Lock()
		if ctx.Err() != nil {
			return 0, errLoginTimeout
		}
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
// unbanned ones, then any; an entry a login waits on goes only in the last
// pass. Each pass frees an eighth of the table at least, so the sweeps
// cost O(1) per entry added.
func evictLocked[K comparable](l *Limiter, m map[K]*failures, now time.Time) {
	target := l.maxKeys - l.maxKeys/8 - 1
	passes := []func(*failures) bool{
		func(f *failures) bool {
			return now.Sub(f.last) >= l.window && !now.Before(f.bannedUntil) && f.waiting == 0
		},
		func(f *failures) bool { return !now.Before(f.bannedUntil) && f.waiting == 0 },
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
