package auth

import (
	"context"
	"encoding/json"
	"runtime"
	"sync"
	"time"
	"weak"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Adapter plugs a Service into the broker's seams: it is the broker's
// Authenticator (with SCRAM-SHA-256 enhanced authentication), Authorizer
// and connect/disconnect hook. Each client's Identity is attached to its
// broker.ClientInfo (ClientInfo.Attach) for as long as the broker keeps
// that ClientInfo, including an offline session's.
type Adapter struct {
	s     *Service
	scram infoMap[*SCRAMServer]
}

// ident returns the identity attached to c.
func ident(c *broker.ClientInfo) (*Identity, bool) {
	id, ok := c.Attached().(*Identity)
	return id, ok
}

var (
	_ broker.EnhancedAuthenticator = (*Adapter)(nil)
	_ broker.Authorizer            = (*Adapter)(nil)
	_ broker.ConnectHook           = (*Adapter)(nil)
	_ broker.DisconnectHook        = (*Adapter)(nil)
)

// Adapter returns the service's broker adapter.
func (s *Service) Adapter() *Adapter {
	s.adOnce.Do(func() { s.ad = &Adapter{s: s} })
	return s.ad
}

// Apply installs the service into broker options: Authenticator,
// Authorizer and hook. The broker's own anonymous check is turned off
// because the service applies auth.allow_anonymous itself (a client with
// a certificate and no username is not anonymous).
func (s *Service) Apply(o *broker.Options) {
	a := s.Adapter()
	o.Authenticator = a
	o.Authorizer = a
	o.AllowAnonymous = true
	o.Hooks = append(o.Hooks, a)
}

// Identity returns the identity attached to a client, if any.
func (a *Adapter) Identity(c *broker.ClientInfo) (*Identity, bool) { return ident(c) }

func request(c *broker.ClientInfo, p *packet.Connect) *Request {
	return &Request{ClientID: c.ClientID, Username: p.Username, Password: p.Password,
		HasUsername: p.UsernameFlag, HasPassword: p.PasswordFlag, Remote: c.Remote, TLS: c.TLS}
}

// Authenticate implements broker.Authenticator. It also checks the will:
// the broker asks CanPublish for it before the client is authenticated,
// when no identity exists yet.
func (a *Adapter) Authenticate(ctx context.Context, c *broker.ClientInfo, p *packet.Connect) error {
	r := request(c, p)
	var id *Identity
	if srv, ok := a.scram.load(c); ok {
		a.scram.delete(c)
		u := srv.User()
		if u == nil {
			return packet.ErrNotAuthorized
		}
		if p.UsernameFlag && p.Username != "" && p.Username != u.Name {
			return a.s.chain.fail(r, addrKey(c.Remote), SCRAMMethod, packet.ErrBadUsernameOrPassword)
		}
		id = a.scramIdentity(c, u)
	} else {
		var err error
		if id, err = a.s.Authenticate(ctx, r); err != nil {
			return err
		}
	}
	if p.WillFlag && !a.s.acl.Load().Check(id, Publish, p.WillTopic) {
		a.s.stats.Denied.Add(1)
		a.s.log.Info("auth: will topic denied", "client_id", c.ClientID, "topic", p.WillTopic)
		return packet.ErrNotAuthorized
	}
	c.Attach(id)
	c.Owner, c.Superuser = id.Owner(), id.Superuser
	if p.Version == packet.V5 && p.Props.SessionExpiry > 0 || p.Version != packet.V5 && !p.CleanStart {
		c.AuthState = id.state() // only a persistent session stores it
	}
	return nil
}

func (a *Adapter) scramIdentity(c *broker.ClientInfo, u *User) *Identity {
	a.s.stats.Success.Add(1)
	return &Identity{ClientID: c.ClientID, Username: u.Name, Remote: c.Remote, Superuser: u.Superuser,
		Backend: SCRAMMethod, credential: u.SCRAM}
}

// AuthExchange implements broker.EnhancedAuthenticator with SCRAM-SHA-256
// over the users file, for CONNECT and for re-authentication. A
// re-authentication must name the connection's owner: another user is
// refused with 0x87 (the broker then disconnects the client).
func (a *Adapter) AuthExchange(ctx context.Context, c *broker.ClientInfo, method string, data []byte) ([]byte, bool, error) {
	s := a.s
	if method != SCRAMMethod || !s.scram {
		return nil, false, packet.ErrBadAuthenticationMethod
	}
	addr := addrKey(c.Remote)
	srv, ok := a.scram.load(c)
	if !ok || srv.state == 2 {
		srv = NewSCRAMServer(s.users.Users().Get, s.fakeKey)
		a.scram.store(c, srv)
	}
	// The address is checked at the first message, the username (known
	// from it) before its proof is: the same limits as a password login.
	r := &Request{ClientID: c.ClientID, Username: srv.name, Remote: c.Remote}
	if err := s.chain.admit(ctx, r, addr); err != nil {
		a.scram.delete(c)
		return nil, false, err
	}
	resp, done, err := srv.Step(data)
	if err != nil {
		a.scram.delete(c)
		s.chain.fail(&Request{ClientID: c.ClientID, Username: srv.name, Remote: c.Remote}, addr, SCRAMMethod, nil)
		return nil, false, packet.ErrNotAuthorized
	}
	old, connected := ident(c)
	if connected && srv.name != c.Owner {
		// Re-authentication as someone else: the connection's session and
		// rights belong to its owner, so the exchange fails (and the
		// broker ends the connection) as soon as the name is known.
		a.scram.delete(c)
		s.stats.Failure.Add(1)
		s.log.Warn("auth: re-authentication as another user refused", "client_id", c.ClientID,
			"owner", c.Owner, "username", srv.name, "remote", addr)
		return nil, false, packet.ErrNotAuthorized
	}
	if !done {
		return resp, true, nil
	}
	if connected {
		// Re-authentication as the same user: the new exchange's identity
		// (the user's current record) replaces the old.
		a.scram.delete(c)
		id := a.scramIdentity(c, srv.User())
		c.Attach(id)
		s.untrack(old)
		s.track(id)
	}
	return resp, false, nil
}

// restoreIdentity rebuilds the identity of a session restored from the
// store (see state); without a usable state, its client id and stored
// username are all it has.
func restoreIdentity(c *broker.ClientInfo) *Identity {
	id := &Identity{ClientID: c.ClientID, Username: c.Username, Remote: c.Remote}
	var s savedIdentity
	if len(c.AuthState) == 0 || json.Unmarshal(c.AuthState, &s) != nil {
		return id
	}
	raw, _ := json.Marshal(s.ACL)
	rules, err := parseJSONRules(raw)
	if err != nil {
		return id
	}
	id.Username, id.CertCN, id.Superuser, id.Anonymous, id.Backend, id.ACL =
		s.Username, s.CertCN, s.Superuser, s.Anonymous, s.Backend, rules
	return id
}

// identOrStored returns the identity attached to c or, for a session
// restored after a restart whose client is not yet back, the identity its
// record kept (attached from then on).
func identOrStored(c *broker.ClientInfo) (*Identity, bool) {
	if id, ok := ident(c); ok {
		return id, true
	}
	if c.ClientID == "" {
		return nil, false
	}
	id := restoreIdentity(c)
	c.Attach(id)
	return id, true
}

// OnConnect implements broker.ConnectHook: connected identities are
// checked again when the users file changes.
func (a *Adapter) OnConnect(c *broker.ClientInfo, _ bool) {
	if id, ok := ident(c); ok {
		a.s.track(id)
		a.expireAt(c, id)
	}
}

// expireAt disconnects c when id's credential expires (a JWT's exp), unless
// c has disconnected or re-authenticated as someone else by then.
func (a *Adapter) expireAt(c *broker.ClientInfo, id *Identity) {
	if id.Expires.IsZero() {
		return
	}
	id.expiry.Store(time.AfterFunc(time.Until(id.Expires), func() {
		if cur, ok := ident(c); ok && cur == id {
			a.s.expire(c, id)
		}
	}))
}

// OnDisconnect implements broker.DisconnectHook.
func (a *Adapter) OnDisconnect(c *broker.ClientInfo, _ error) {
	if id, ok := ident(c); ok {
		a.s.untrack(id)
	}
}

func (a *Adapter) denied() error {
	a.s.stats.Denied.Add(1)
	return packet.ErrNotAuthorized
}

// CanPublish implements broker.Authorizer. A client without an identity
// is a session restored after a restart whose delayed will fires before
// the client is back: it is judged as its stored identity (see
// CanReceive). A denied 3.1.1 publish is dropped by the broker, and with
// auth.v3_denied_publish: disconnect that connection is also closed
// (through SetDisconnectClient): that one only, so that a will denied as
// it fires never closes the connection that took its client id over.
func (a *Adapter) CanPublish(c *broker.ClientInfo, topic string, _ byte, _ bool) error {
	id, ok := identOrStored(c)
	if !ok {
		return a.denied()
	}
	if id.revoked.Load() || !a.s.acl.Load().Check(id, Publish, topic) {
		if c.Version != packet.V5 && a.s.cfg.V3DeniedPublish == "disconnect" {
			a.s.endAsync(c, packet.ErrNotAuthorized)
		}
		return a.denied()
	}
	return nil
}

// CanSubscribe implements broker.Authorizer; a shared subscription is
// checked by its inner filter.
func (a *Adapter) CanSubscribe(c *broker.ClientInfo, filter string, _ byte) error {
	id, ok := ident(c)
	if !ok || id.revoked.Load() || !a.s.acl.Load().CheckFilter(id, filter) {
		return a.denied()
	}
	return nil
}

// CanReceive implements broker.Authorizer: every delivery, retained and
// will messages included, needs subscribe permission on the topic. A
// session restored from the store after a restart has no identity until its
// client connects again; meanwhile messages for it are checked against the
// ACL file as its stored client id and username (never as a superuser, and
// without rules a JWT or webhook gave it), so that its queue keeps filling
// while the device is away.
func (a *Adapter) CanReceive(c *broker.ClientInfo, m *broker.Message) error {
	id, ok := identOrStored(c)
	if !ok {
		return a.denied()
	}
	if id.revoked.Load() || !a.s.acl.Load().Check(id, Subscribe, m.Topic) {
		return a.denied()
	}
	return nil
}

// infoMap attaches values to ClientInfos by weak pointer: an entry goes
// when the broker drops its ClientInfo. It serves what is attached only
// during an exchange (SCRAM's state); an identity is read far more often
// and is kept in the ClientInfo itself.
type infoMap[V any] struct{ m sync.Map }

func (im *infoMap[V]) load(c *broker.ClientInfo) (V, bool) {
	v, ok := im.m.Load(weak.Make(c))
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true
}

func (im *infoMap[V]) store(c *broker.ClientInfo, v V) {
	k := weak.Make(c)
	if _, loaded := im.m.Swap(k, v); !loaded {
		runtime.AddCleanup(c, func(k weak.Pointer[broker.ClientInfo]) { im.m.Delete(k) }, k)
	}
}

func (im *infoMap[V]) delete(c *broker.ClientInfo) { im.m.Delete(weak.Make(c)) }
