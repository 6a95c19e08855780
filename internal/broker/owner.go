package broker

import (
	"strings"
	"sync"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Client id binding modes (Options.ClientIDBinding).
const (
	BindNone   = "none"
	BindEqual  = "equal"
	BindPrefix = "prefix"
)

// keyLocks is a mutex per key, made when first locked and dropped when its
// last holder or waiter unlocks: the takeover step of CONNECT is exclusive
// per client id, and CONNECTs of different ids proceed in parallel. Keys
// cost nothing once unlocked.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by keyLocks.mu
}

// lock locks key and returns the function that unlocks it.
func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		if k.m == nil {
			k.m = make(map[string]*keyLock)
		}
		l = new(keyLock)
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// len is the number of keys locked or waited for.
func (k *keyLocks) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

// owns says whether sessions belong to their owners here: an Authenticator
// sets ClientInfo.Owner; without one every client is anonymous.
func (b *Broker) owns() bool { return b.opts.Authenticator != nil }

// checkBinding applies Options.ClientIDBinding to an authenticated client:
// its client id must equal (or, with prefix, start with) its owner or the
// CN of its verified certificate. An anonymous client has neither and may
// only use an id the server assigns [MQTT-3.1.3-6].
func (c *conn) checkBinding(assigned bool) error {
	mode := c.b.opts.ClientIDBinding
	if mode == "" || mode == BindNone || assigned {
		return nil
	}
	id := c.info.ClientID
	for _, name := range [2]string{c.info.Owner, verifiedCN(c.info)} {
		if name != "" && (id == name || mode == BindPrefix && strings.HasPrefix(id, name)) {
			return nil
		}
	}
	c.b.stats.bindingRefused.Add(1)
	c.b.log.Warn("client id refused: not bound to the client's identity", "client_id", id,
		"identity", ownerName(c.info.Owner), "binding", mode, "remote", addrOf(c.info))
	return c.refuse(packet.ErrClientIdentifierNotValid, nil)
}

// verifiedCN is the common name of the client's certificate when the TLS
// stack verified it; an unverified certificate's name is the client's say-so.
func verifiedCN(info *ClientInfo) string {
	if info.TLS == nil || len(info.TLS.VerifiedChains) == 0 || len(info.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return info.TLS.VerifiedChains[0][0].Subject.CommonName
}

// takeoverOwner decides whether the connecting client may attach to the
// session of its client id, if there is one; the id's lock is held. It
// returns the owner the session keeps: the client's identity for a new
// session or one whose owner is its own, the old owner when a superuser
// takes it over (so that the device can reclaim it), or the client's for
// a session restored from a record older than ownership, which the first
// client to resume claims. A session made by an anonymous client goes to
// the first identity that claims it: any anonymous client could take it,
// and a node that gains an auth backend keeps its devices' sessions.
// Another identity is refused, and the session and its live connection
// are left untouched.
func (c *conn) takeoverOwner() (string, error) {
	b := c.b
	me := c.info.Owner
	b.mu.Lock()
	s := b.sessions[c.info.ClientID]
	b.mu.Unlock()
	if s == nil || !b.owns() {
		return me, nil
	}
	s.mu.Lock()
	owner, known, gone := s.owner, s.ownerKnown, s.gone
	s.mu.Unlock()
	if gone || !known {
		return me, nil
	}
	return c.keepOwner(owner)
}

// keepOwner applies the ownership rules to a session that belongs to
// owner (on this node, or on another: Claim.Decide): the owner the session
// keeps, or ErrNotAuthorized for another identity.
func (c *conn) keepOwner(owner string) (string, error) {
	b := c.b
	me := c.info.Owner
	switch {
	case !b.owns() || owner == me:
		return me, nil
	case owner == "":
		b.log.Info("anonymous session claimed by an identity", "client_id", c.info.ClientID,
			"identity", me, "remote", addrOf(c.info))
		return me, nil
	case b.opts.SuperuserTakeover && c.info.Superuser:
		b.log.Info("session taken over by a superuser", "client_id", c.info.ClientID,
			"identity", me, "owner", ownerName(owner), "remote", addrOf(c.info))
		return owner, nil
	}
	b.stats.takeoverRefused.Add(1)
	b.log.Warn("session takeover refused: the client id belongs to another identity",
		"client_id", c.info.ClientID, "identity", ownerName(me), "owner", ownerName(owner),
		"remote", addrOf(c.info))
	return "", packet.ErrNotAuthorized
}

// ownerName is an owner for logs.
func ownerName(owner string) string {
	if owner == "" {
		return "(anonymous)"
	}
	return owner
}

func addrOf(info *ClientInfo) string {
	if info.Remote == nil {
		return ""
	}
	return info.Remote.String()
}

// recheckLocked drops the queued and in-flight messages of a resumed
// session that its client may no longer receive (a right removed while it
// was away): they are counted as not authorized and never sent. Released
// QoS 2 messages (PUBREL sent) were received already and stay.
func (s *session) recheckLocked(info *ClientInfo) {
	az := s.b.opts.Authorizer
	if az == nil {
		return
	}
	for pid, om := range s.inflight {
		if om.state != outReleased && az.CanReceive(info, om.msg) != nil {
			delete(s.inflight, pid)
			s.dropLocked(om, DropNotAuthorized)
		}
	}
	kept, before := s.queue[:s.qhead], s.qlenLocked()
	for _, om := range s.queue[s.qhead:] {
		if az.CanReceive(info, om.msg) != nil {
			s.qbytes -= om.size()
			s.dropLocked(om, DropNotAuthorized)
			continue
		}
		kept = append(kept, om)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	s.b.stats.queued.Add(int64(s.qlenLocked() - before))
	if s.qhead == len(s.queue) {
		s.queue, s.qhead, s.qbytes = nil, 0, 0
	}
}

// reservation is what reserveSession took for a new persistent session: a
// slot of mqtt.max_sessions, and one of its owner's
// mqtt.max_sessions_per_identity.
type reservation struct{ global, owned bool }

// reserveSession takes the slots a persistent session of id owned by owner
// needs: none for a session id already has (of that owner, for the
// per-identity count). countPersistent accounts for them. At either cap the
// CONNECT is refused with 0x97 (3.1.1: return code 3, server unavailable).
func (b *Broker) reserveSession(id, owner string) (reservation, error) {
	var r reservation
	b.mu.Lock()
	s := b.sessions[id]
	b.mu.Unlock()
	had, hadOwner := false, ""
	if s != nil {
		s.mu.Lock()
		had, hadOwner = s.persistent && !s.gone, s.owner
		s.mu.Unlock()
	}
	if max := b.cfg.MaxSessions; max > 0 && !had {
		if b.stats.persistent.Add(1) > int64(max) {
			b.stats.persistent.Add(-1)
			b.stats.sessionsRefused.Add(1)
			b.log.Warn("persistent session refused: mqtt.max_sessions reached", "client_id", id, "max_sessions", max)
			return r, packet.ErrQuotaExceeded
		}
		r.global = true
	}
	if max := b.cfg.MaxSessionsPerIdentity; max > 0 && owner != "" && !(had && hadOwner == owner) {
		if !b.owned.reserve(owner, max) {
			if r.global {
				b.stats.persistent.Add(-1)
			}
			b.stats.sessionsRefused.Add(1)
			b.log.Warn("persistent session refused: mqtt.max_sessions_per_identity reached", "client_id", id,
				"identity", owner, "max_sessions_per_identity", max)
			return reservation{}, packet.ErrQuotaExceeded
		}
		r.owned = true
	}
	return r, nil
}

// countPersistent keeps the counts of persistent sessions when a session's
// persistent flag goes from was (owned by from) to is (owned by to); r is
// what reserveSession took for it.
func (b *Broker) countPersistent(was, is bool, from, to string, r reservation) {
	var d int64
	if is {
		d++
		b.owned.add(to, 1)
	}
	if was {
		d--
		b.owned.add(from, -1)
	}
	if r.global {
		d--
	}
	if r.owned {
		b.owned.add(to, -1)
	}
	if d != 0 {
		b.stats.persistent.Add(d)
	}
}

// ownedSessions counts the persistent sessions of each authenticated
// identity, for mqtt.max_sessions_per_identity; anonymous ("") is not
// counted. An identity with none has no entry.
type ownedSessions struct {
	mu sync.Mutex
	n  map[string]int
}

// reserve counts one more session of owner unless it has max already.
func (o *ownedSessions) reserve(owner string, max int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[owner] >= max {
		return false
	}
	o.addLocked(owner, 1)
	return true
}

func (o *ownedSessions) add(owner string, d int) {
	if owner == "" {
		return
	}
	o.mu.Lock()
	o.addLocked(owner, d)
	o.mu.Unlock()
}

func (o *ownedSessions) addLocked(owner string, d int) {
	if o.n == nil {
		o.n = make(map[string]int)
	}
	if o.n[owner] += d; o.n[owner] <= 0 {
		delete(o.n, owner)
	}
}
