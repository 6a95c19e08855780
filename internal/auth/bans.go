package auth

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Ban kinds.
const (
	BanClientID = "client_id"
	BanUsername = "username"
	BanAddress  = "address"
)

// Ban sources: an operator's, or the Limiter's after failed logins.
const (
	BanManual       = "manual"
	BanFailedLogins = "failed_logins"
)

// Ban refuses the logins of a client id, a username (as presented in
// CONNECT) or a source address (an IPv4 address or an IPv6 /64) with
// 0x8A banned, until Until (zero: until lifted).
type Ban struct {
	Kind    string
	Value   string
	Reason  string
	Source  string
	Created time.Time
	Until   time.Time
}

type banKey struct{ kind, value string }

// bans are the operator's bans; the Limiter keeps its own.
type bans struct {
	mu   sync.Mutex
	list map[banKey]Ban
}

// match reports whether r is banned now.
func (b *bans) match(r *Request, addr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.list) == 0 {
		return false
	}
	now := time.Now()
	for _, k := range [...]banKey{{BanClientID, r.ClientID}, {BanUsername, r.Username}, {BanAddress, addr}} {
		if x, ok := b.list[k]; ok && k.value != "" {
			if x.Until.IsZero() || now.Before(x.Until) {
				return true
			}
			delete(b.list, k)
		}
	}
	return false
}

// AddrKey is the key a remote address is counted and banned under: an
// IPv4 address, or an IPv6 address's /64 prefix.
func AddrKey(a net.Addr) string { return addrKey(a) }

// BanKey normalises a ban's value: an address becomes its AddrKey (an
// IPv6 address, with or without /64, its /64).
func BanKey(kind, value string) (string, error) {
	switch kind {
	case BanClientID, BanUsername:
		if value == "" {
			return "", fmt.Errorf("%s: empty value", kind)
		}
		return value, nil
	case BanAddress:
		v := value
		if p, err := netip.ParsePrefix(value); err == nil && p.Addr().Is6() && p.Bits() == 64 {
			v = p.Addr().String()
		}
		ip := net.ParseIP(v)
		if ip == nil {
			return "", fmt.Errorf("address %q is not an IP address", value)
		}
		return ipKey(ip), nil
	}
	return "", fmt.Errorf("ban kind %q: want client_id, username or address", kind)
}

// AddBan bans a client id, username or address (see Ban); a ban of the
// same value replaces the previous one.
func (s *Service) AddBan(b Ban) (Ban, error) {
	v, err := BanKey(b.Kind, b.Value)
	if err != nil {
		return b, err
	}
	b.Value, b.Source = v, BanManual
	if b.Created.IsZero() {
		b.Created = time.Now()
	}
	s.bans.mu.Lock()
	if s.bans.list == nil {
		s.bans.list = map[banKey]Ban{}
	}
	s.bans.list[banKey{b.Kind, v}] = b
	s.bans.mu.Unlock()
	s.log.Warn("auth: banned", "kind", b.Kind, "value", v, "until", b.Until, "reason", b.Reason)
	return b, nil
}

// RemoveBan lifts the manual ban, or the failed-logins ban of an address,
// of kind and value; it reports whether there was one.
func (s *Service) RemoveBan(kind, value string) (bool, error) {
	v, err := BanKey(kind, value)
	if err != nil {
		return false, err
	}
	s.bans.mu.Lock()
	_, manual := s.bans.list[banKey{kind, v}]
	delete(s.bans.list, banKey{kind, v})
	s.bans.mu.Unlock()
	auto := kind == BanAddress && s.limiter.unban(v)
	if manual || auto {
		s.log.Info("auth: ban lifted", "kind", kind, "value", v)
	}
	return manual || auto, nil
}

// Bans lists the bans in force: the manual ones and the addresses the
// Limiter banned after failed logins, sorted by kind and value.
func (s *Service) Bans() []Ban {
	now := time.Now()
	var out []Ban
	s.bans.mu.Lock()
	for k, b := range s.bans.list {
		if !b.Until.IsZero() && !now.Before(b.Until) {
			delete(s.bans.list, k)
			continue
		}
		out = append(out, b)
	}
	s.bans.mu.Unlock()
	out = append(out, s.limiter.banned()...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// banned lists the addresses banned now.
func (l *Limiter) banned() []Ban {
	if l == nil {
		return nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Ban
	for a, f := range l.addrs {
		if now.Before(f.bannedUntil) {
			out = append(out, Ban{Kind: BanAddress, Value: a, Source: BanFailedLogins, Reason: "failed logins",
				Created: f.bannedUntil.Add(-l.ban), Until: f.bannedUntil})
		}
	}
	return out
}

// unban lifts the ban of an address and forgets its failures.
func (l *Limiter) unban(addr string) bool {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.addrs[addr]
	if !ok {
		return false
	}
	delete(l.addrs, addr)
	return now.Before(f.bannedUntil)
}
