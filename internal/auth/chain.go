package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Chain asks its backends in order; the first Allow or Deny wins. When all
// ignore a request, an anonymous identity is allowed if anonymous access is
// on and the client offered no credentials (or no backend is configured at
// all); otherwise it is refused. Failures feed the Limiter, whose bans are
// checked before any backend runs.
type Chain struct {
	backends  []Authenticator
	anonymous bool
	limiter   *Limiter
	log       *slog.Logger
	stats     *Stats
	bans      *bans // the operator's (bans.go); nil for none
}

// Stats counts authentication and authorization outcomes; read it with
// Service.Stats. All fields are safe for concurrent use.
type Stats struct {
	Success       atomic.Int64
	Anonymous     atomic.Int64
	Failure       atomic.Int64
	BackendErrors atomic.Int64
	Banned        atomic.Int64 // logins refused because their address is banned
	NewBans       atomic.Int64 // addresses banned
	Throttled     atomic.Int64 // logins delayed because of their username's failures
	Denied        atomic.Int64 // ACL denials
	Revoked       atomic.Int64 // clients disconnected by a reload
	Expired       atomic.Int64 // clients disconnected when their credential expired
	// ReloadFailures counts users or ACL file loads that failed (unreadable,
	// bad syntax): each leaves the previous version in force and is logged
	// as an error.
	ReloadFailures atomic.Int64
	// ByBackend counts logins by deciding backend and result
	// (backendstats.go).
	ByBackend BackendCounts
}

// NewChain returns a chain over backends. limiter, log and stats may be nil.
func NewChain(backends []Authenticator, anonymous bool, limiter *Limiter, log *slog.Logger, stats *Stats) *Chain {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if stats == nil {
		stats = new(Stats)
	}
	return &Chain{backends: backends, anonymous: anonymous, limiter: limiter, log: log, stats: stats}
}

// Authenticate returns the identity of an allowed client or a packet.Code
// error: ErrBanned, ErrBadUsernameOrPassword, ErrNotAuthorized or a
// backend's own code.
func (c *Chain) Authenticate(ctx context.Context, r *Request) (*Identity, error) {
	addr := addrKey(r.Remote)
	if err := c.admit(ctx, r, addr); err != nil {
		return nil, err
	}
	hashed := false // whether a users backend checked the password
	for _, b := range c.backends {
		res, err := b.Authenticate(ctx, r)
		hashed = hashed || res.hashed
		if err != nil {
			// Not the client's fault: refused, but not counted towards a ban.
			c.stats.BackendErrors.Add(1)
			c.log.Error("auth: backend failed", "backend", b.Name(), "client_id", r.ClientID, "err", err)
			c.decoy(ctx, r, hashed)
			if ctx.Err() != nil {
				return nil, packet.ErrServerBusy
			}
			return nil, packet.ErrServerUnavailable
		}
		switch res.Verdict {
		case Allow:
			c.stats.Success.Add(1)
			c.stats.ByBackend.add(b.Name(), "success")
			return c.identity(r, b.Name(), &res), nil
		case Deny:
			c.decoy(ctx, r, hashed)
			return nil, c.fail(r, addr, b.Name(), res.Code)
		}
	}
	if c.anonymous && (!r.offered() || len(c.backends) == 0) {
		c.stats.Anonymous.Add(1)
		c.stats.ByBackend.add("anonymous", "success")
		return &Identity{ClientID: r.ClientID, Remote: r.Remote, Anonymous: true,
			CertCN: verifiedCN(r), Backend: "anonymous"}, nil
	}
	if !r.offered() {
		c.stats.Failure.Add(1)
		c.stats.ByBackend.add("", "failure")
		return nil, packet.ErrNotAuthorized
	}
	c.decoy(ctx, r, hashed)
	return nil, c.fail(r, addr, "", packet.ErrBadUsernameOrPassword)
}

// decoy makes every refused login that offered a password cost one hash
// check, as a known user's wrong password does, unless one was already
// done: then the refusal takes as long whether the username exists or
// not, whichever backend refused it and in whatever order the backends
// are. A login without a password costs no hash on any path.
func (c *Chain) decoy(ctx context.Context, r *Request, hashed bool) {
	if hashed || !r.HasPassword {
		return
	}
	for _, b := range c.backends {
		if ua, ok := b.(*UserAuth); ok {
			ua.decoy(ctx, r.Password)
			return
		}
	}
}

// admit applies the Limiter before any check: a banned address is refused
// (0x8A), and a login for a username with recent failures waits its turn
// (logins for that username are checked one per delay step); if another
// login already waits for the username, or the connect timeout would end
// first, it is refused as busy (0x89) for the client to retry.
func (c *Chain) admit(ctx context.Context, r *Request, addr string) error {
	if c.limiter.Banned(addr) || c.bans != nil && c.bans.match(r, addr) {
		c.stats.Banned.Add(1)
		c.log.Warn("auth: login refused, address banned", "client_id", r.ClientID, "username", r.Username, "remote", addr)
		return packet.ErrBanned
	}
	waited, err := c.limiter.Wait(ctx, r.Username)
	if waited > 0 || err != nil {
		c.stats.Throttled.Add(1)
		args := []any{"client_id", r.ClientID, "username", r.Username, "remote", addr, "waited", waited}
		if err != nil {
			args = append(args, "refused", err.Error())
		}
		c.log.Info("auth: login slowed after failed logins for its username", args...)
	}
	if err != nil {
		return packet.ErrServerBusy
	}
	return nil
}

func (c *Chain) fail(r *Request, addr, backend string, code error) error {
	c.stats.Failure.Add(1)
	c.stats.ByBackend.add(backend, "failure")
	if code == nil {
		code = packet.ErrBadUsernameOrPassword
	}
	if c.limiter.Fail(addr, r.Username) {
		c.stats.NewBans.Add(1)
		c.log.Warn("auth: address banned after failed logins", "username", r.Username, "remote", addr)
	}
	c.log.Info("auth: login denied", "backend", backend, "client_id", r.ClientID, "username", r.Username,
		"remote", addr, "reason", code)
	var pc packet.Code
	if !errors.As(code, &pc) {
		code = packet.ErrNotAuthorized
	}
	return code
}

func (c *Chain) identity(r *Request, backend string, res *Result) *Identity {
	id := &Identity{ClientID: r.ClientID, Username: res.Username, CertCN: res.CertCN, Remote: r.Remote,
		Superuser: res.Superuser, ACL: res.ACL, Backend: backend, Expires: res.Expires, credential: res.credential}
	if id.Username == "" {
		// A copy: the CONNECT's username is a view of the whole packet,
		// which the identity would otherwise keep for the connection's life.
		id.Username = strings.Clone(r.Username)
	}
	if id.CertCN == "" {
		id.CertCN = verifiedCN(r)
	}
	return id
}

// verifiedCN is the common name of a client certificate the TLS stack
// verified; an unverified certificate's name is the client's say-so.
func verifiedCN(r *Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}
