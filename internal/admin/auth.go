package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/admin/account"
	"github.com/culexmq/culex/internal/auth"
)

// access is what a route requires.
type access uint8

const (
	public access = iota // no authentication
	self                 // any authenticated caller, even one that must change its password
	read                 // viewer or admin
	write                // admin
)

// sessionCookie names the dashboard's session cookie.
const sessionCookie = "culex_session"

// principal is who calls: an account through its session cookie, or an
// API key.
type principal struct {
	name string
	// account is the dashboard account acting: the logged-in one, or the
	// one that created the API key.
	account    string
	role       string
	kind       string // "session" or "api_key"
	mustChange bool
	token      string // session token
	session    account.Session
}

type ctxKey struct{}

func caller(r *http.Request) *principal {
	p, _ := r.Context().Value(ctxKey{}).(*principal)
	return p
}

// wrap authenticates and authorises a request for rt, then runs it.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody+1)
		if err := s.admit(w, r, rt); err != nil {
			writeError(w, r, s.log, err)
		}
	})
}

func (s *Server) admit(w http.ResponseWriter, r *http.Request, rt route) error {
	if rt.access == public {
		return rt.h(w, r)
	}
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case p.kind == "session" && !safe && subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(p.session.CSRF)) != 1:
		return errCSRF
	case p.mustChange && rt.access != self:
		return errMustChange
	case rt.access == write && p.role != account.RoleAdmin:
		return errForbidden
	}
	return rt.h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
}

// authenticate finds the caller: an API key in Authorization (Bearer
// ID:SECRET, or Basic with the id as user), else the session cookie. A
// wrong key counts as a failed login of its address.
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	addr := remoteKey(r)
	if h := r.Header.Get("Authorization"); h != "" {
		if s.limiter.Banned(addr) {
			return nil, errTooMany
		}
		id, secret, ok := r.BasicAuth()
		if !ok {
			tok, bearer := strings.CutPrefix(h, "Bearer ")
			id, secret, ok = strings.Cut(strings.TrimSpace(tok), ":")
			ok = ok && bearer
		}
		if !ok {
			return nil, errUnauthorized
		}
		k, ok := s.accounts.VerifyKey(id, secret)
		if !ok {
			s.failed(addr, "", "api key", id)
			return nil, errUnauthorized
		}
		return &principal{name: k.Name, account: k.CreatedBy, role: k.Role, kind: "api_key"}, nil
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, errUnauthorized
	}
	sess, a, ok := s.accounts.Session(c.Value)
	if !ok {
		return nil, errUnauthorized
	}
	return &principal{name: a.Name, account: a.Name, role: a.Role, kind: "session", mustChange: a.MustChange, token: c.Value, session: sess}, nil
}

// failed counts a failed login against its address and name.
func (s *Server) failed(addr, user, what, name string) {
	if s.limiter.Fail(addr, user) {
		s.log.Warn("admin: address banned after failed logins", "remote", addr)
	}
	s.log.Info("admin: login failed", "kind", what, "name", name, "remote", addr)
}

// remoteKey is the limiter's key of the request's source address.
func remoteKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return auth.AddrKey(net.TCPAddrFromAddrPort(ap))
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type meJSON struct {
	Username   string     `json:"username"`
	Role       string     `json:"role"`
	Auth       string     `json:"auth"`
	MustChange bool       `json:"must_change_password"`
	CSRF       string     `json:"csrf_token,omitempty"`
	Expires    *time.Time `json:"expires_at,omitempty"`
}

func (p *principal) json() meJSON {
	m := meJSON{Username: p.name, Role: p.role, Auth: p.kind, MustChange: p.mustChange}
	if p.kind == "session" {
		m.CSRF = p.session.CSRF
		t := p.session.Expires.UTC()
		m.Expires = &t
	}
	return m
}

// secureCookie says whether the session cookie of r is marked Secure:
// admin.secure_cookies always, or auto with admin.tls or a reverse proxy
// saying it got the request over HTTPS (X-Forwarded-Proto: https).
func (s *Server) secureCookie(r *http.Request) bool {
	switch s.opts.Config.Admin.SecureCookies {
	case "always":
		return true
	case "never":
		return false
	}
	return s.secure || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// loginWait bounds how long a slowed login waits for its turn.
const loginWait = 10 * time.Second

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Username == "" || req.Password == "" {
		return badRequest("username and password are required")
	}
	addr := remoteKey(r)
	if s.limiter.Banned(addr) {
		return errTooMany
	}
	ctx, cancel := context.WithTimeout(r.Context(), loginWait)
	defer cancel()
	if _, err := s.limiter.Wait(ctx, req.Username); err != nil {
		return errTooMany
	}
	a, err := s.accounts.Login(req.Username, req.Password)
	if err != nil {
		s.failed(addr, req.Username, "account", req.Username)
		return errorf(http.StatusUnauthorized, "unauthorized", "wrong username or password")
	}
	tok, sess := s.accounts.NewSession(a.Name)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, Secure: s.secureCookie(r),
		SameSite: http.SameSiteStrictMode, Expires: sess.Expires})
	s.log.Info("admin: login", "user", a.Name, "role", a.Role, "remote", addr)
	p := &principal{name: a.Name, account: a.Name, role: a.Role, kind: "session", mustChange: a.MustChange, token: tok, session: sess}
	return writeJSON(w, http.StatusOK, p.json())
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	p := caller(r)
	if p.kind == "session" {
		s.accounts.EndSession(p.token)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: s.secureCookie(r),
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	return noContent(w)
}

// session answers whether the request carries a live session or key,
// never 401: the dashboard's probe on a fresh page.
func (s *Server) session(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return writeJSON(w, http.StatusOK, sessionJSON{})
	}
	m := p.json()
	return writeJSON(w, http.StatusOK, sessionJSON{Authenticated: true, meJSON: &m})
}

type sessionJSON struct {
	Authenticated bool `json:"authenticated"`
	*meJSON
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, caller(r).json())
}

type passwordChange struct {
	Old string `json:"old_password"`
	New string `json:"new_password"`
}

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) error {
	p := caller(r)
	if p.kind != "session" {
		return errorf(http.StatusForbidden, "forbidden", "an API key has no password; log in as the account")
	}
	var req passwordChange
	if err := decode(r, &req); err != nil {
		return err
	}
	addr := remoteKey(r)
	if s.limiter.Banned(addr) {
		return errTooMany
	}
	a, err := s.accounts.ChangePassword(p.name, req.Old, req.New, account.SessionKey(p.token))
	if err == account.ErrBadLogin {
		s.failed(addr, p.name, "password change", p.name)
		return badRequest("the old password is wrong")
	}
	if err != nil {
		return accountError(err)
	}
	s.log.Info("admin: password changed", "user", a.Name)
	p.mustChange = false
	return writeJSON(w, http.StatusOK, p.json())
}

// accountError maps the account store's errors to API errors.
func accountError(err error) error {
	var inv account.Invalid
	switch {
	case errors.As(err, &inv):
		return badRequest("%v", err)
	case errors.Is(err, account.ErrNotFound):
		return notFound("%v", err)
	case errors.Is(err, account.ErrExists), errors.Is(err, account.ErrLastAdmin):
		return conflict("%v", err)
	}
	return err
}
