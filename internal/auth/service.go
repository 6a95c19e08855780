package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Service is device security for one node: the authentication chain, the
// ACL, the rate limiter and the reload of the users and ACL files. Build
// it with New, plug it into the broker with Apply (adapter.go), reload it
// on SIGHUP with Reload, and stop its watcher with Close.
type Service struct {
	cfg        config.Auth
	log        *slog.Logger
	stats      Stats
	chain      *Chain
	users      *UserAuth // nil without a users file
	scram      bool
	limiter    *Limiter
	acl        atomic.Pointer[ACL]
	fakeKey    []byte
	disconnect atomic.Pointer[func(clientID string)]
	endConn    atomic.Pointer[func(c *broker.ClientInfo, code packet.Code)]
	adOnce     sync.Once
	ad         *Adapter
	bans       bans       // the operator's (bans.go)
	editMu     sync.Mutex // serialises EditUsers

	// mu guards the fields below it and serialises reloads.
	mu        sync.Mutex
	usersSeen fileStamp
	aclSeen   fileStamp
	live      map[*Identity]struct{}
	closed    bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// New builds the service described by cfg and starts watching its files
// (cfg.WatchInterval). log may be nil.
func New(cfg config.Auth, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, live: map[*Identity]struct{}{}, stop: make(chan struct{}),
		fakeKey: make([]byte, 32)}
	rand.Read(s.fakeKey)
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	rl := cfg.RateLimit
	if rl.PerAddress > 0 || rl.PerUsername > 0 {
		s.limiter = NewLimiter(rl.PerAddress, rl.PerUsername, rl.Window, rl.Ban, rl.MaxDelay)
	}
	backends, err := s.backends()
	if err != nil {
		return nil, err
	}
	s.chain = NewChain(backends, cfg.AnonymousAllowed(), s.limiter, log, &s.stats)
	s.chain.bans = &s.bans
	s.acl.Store(NewACL(nil, cfg.ACLDefaultAllow(), cfg.SysSuperuserOnly))
	if err := s.Reload(); err != nil {
		return nil, err
	}
	if cfg.WatchInterval > 0 && (cfg.UsersFile != "" || cfg.ACLFile != "") {
		s.wg.Add(1)
		go s.watch(cfg.WatchInterval)
	}
	return s, nil
}

func validate(cfg *config.Auth) error {
	switch {
	case cfg.ACLDefault != "" && cfg.ACLDefault != "allow" && cfg.ACLDefault != "deny":
		return fmt.Errorf("auth.acl_default %q: want allow or deny", cfg.ACLDefault)
	case cfg.V3DeniedPublish != "drop" && cfg.V3DeniedPublish != "disconnect":
		return fmt.Errorf("auth.v3_denied_publish %q: want drop or disconnect", cfg.V3DeniedPublish)
	case cfg.HTTP.OnError != "deny" && cfg.HTTP.OnError != "next":
		return fmt.Errorf("auth.http.on_error %q: want deny or next", cfg.HTTP.OnError)
	case cfg.RateLimit.Window <= 0 && (cfg.RateLimit.PerAddress > 0 || cfg.RateLimit.PerUsername > 0):
		return errors.New("auth.rate_limit.window must be positive")
	}
	return nil
}

// backends builds the chain in cfg.Backends order, skipping backends that
// are not configured.
func (s *Service) backends() ([]Authenticator, error) {
	cfg := &s.cfg
	var out []Authenticator
	for _, name := range strings.Split(cfg.Backends, ",") {
		switch name = strings.TrimSpace(name); name {
		case "":
		case "users":
			if cfg.UsersFile != "" {
				s.users = NewUserAuth(NewUsers(), cfg.MaxConcurrentChecks, cfg.CacheTTL)
				out = append(out, s.users)
			}
		case "scram":
			s.scram = cfg.UsersFile != ""
			if s.scram && s.users == nil {
				s.users = NewUserAuth(NewUsers(), cfg.MaxConcurrentChecks, cfg.CacheTTL)
			}
		case "http":
			if cfg.HTTP.URL != "" {
				out = append(out, &Webhook{URL: cfg.HTTP.URL, Timeout: cfg.HTTP.Timeout,
					NextOnError: cfg.HTTP.OnError == "next", CacheTTL: cfg.HTTP.CacheTTL})
			}
		case "jwt":
			j, err := newJWT(&cfg.JWT)
			if err != nil {
				return nil, err
			}
			if j != nil {
				out = append(out, j)
			}
		case "cert":
			if cfg.Cert.CAFile != "" {
				c, err := NewCert(cfg.Cert.CAFile, cfg.Cert.UsernameFrom)
				if err != nil {
					return nil, fmt.Errorf("auth.cert: %w", err)
				}
				out = append(out, c)
			}
		default:
			return nil, fmt.Errorf("auth.backends: unknown backend %q (users, jwt, http, cert, scram)", name)
		}
	}
	return out, nil
}

func newJWT(cfg *config.AuthJWT) (*JWT, error) {
	if cfg.SecretFile == "" && cfg.PublicKeyFile == "" && cfg.JWKSURL == "" {
		return nil, nil
	}
	j := &JWT{Issuer: cfg.Issuer, Audience: cfg.Audience, UsernameClaim: cfg.UsernameClaim, Leeway: cfg.Leeway}
	if cfg.SecretFile != "" {
		secret, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.secret_file: %w", err)
		}
		if j.Secret = []byte(strings.TrimSpace(string(secret))); len(j.Secret) < 32 {
			return nil, errors.New("auth.jwt.secret_file: an HS256 secret needs at least 32 bytes")
		}
	}
	if cfg.PublicKeyFile != "" {
		k, err := LoadPublicKey(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth.jwt.public_key_file: %w", err)
		}
		j.Key = k
	}
	if cfg.JWKSURL != "" {
		j.JWKS = &JWKS{URL: cfg.JWKSURL, Refresh: cfg.JWKSRefresh, MinInterval: 10 * time.Second,
			Client: &http.Client{Timeout: 10 * time.Second}}
	}
	return j, nil
}

// Authenticate runs the chain. The error is a packet.Code.
func (s *Service) Authenticate(ctx context.Context, r *Request) (*Identity, error) {
	return s.chain.Authenticate(ctx, r)
}

// ACL returns the current ACL.
func (s *Service) ACL() *ACL { return s.acl.Load() }

// Stats returns the service's counters.
func (s *Service) Stats() *Stats { return &s.stats }

// Limiter returns the failed-login limiter (nil when rate limits are off).
func (s *Service) Limiter() *Limiter { return s.limiter }

// SetDisconnect installs the function that closes a client's connection,
// called for each client whose credentials a reload revoked. Until one is
// installed a revoked client stays connected but may do nothing.
func (s *Service) SetDisconnect(fn func(clientID string)) { s.disconnect.Store(&fn) }

// SetDisconnectClient installs the function that ends one connection,
// called for a client whose credential expires while it is connected.
func (s *Service) SetDisconnectClient(fn func(c *broker.ClientInfo, code packet.Code)) {
	s.endConn.Store(&fn)
}

// track registers a connected identity for revocation checks; untrack
// forgets it (and stops its expiry).
func (s *Service) track(id *Identity) {
	s.mu.Lock()
	s.live[id] = struct{}{}
	s.mu.Unlock()
}

func (s *Service) untrack(id *Identity) {
	s.mu.Lock()
	delete(s.live, id)
	s.mu.Unlock()
	if t := id.expiry.Load(); t != nil {
		t.Stop()
	}
}

// expire disconnects c, whose credential (id's) has expired, with 0xA0
// (maximum connect time) for a v5 client.
func (s *Service) expire(c *broker.ClientInfo, id *Identity) {
	fn := s.endConn.Load()
	if fn == nil {
		return
	}
	s.stats.Expired.Add(1)
	s.log.Info("auth: credential expired, disconnecting", "client_id", c.ClientID, "username", id.Username, "backend", id.Backend)
	(*fn)(c, packet.ErrMaximumConnectTime)
}

// Close stops watching the files and waits for the service's goroutines.
func (s *Service) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
