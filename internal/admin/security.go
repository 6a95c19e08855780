package admin

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

type banJSON struct {
	Kind    string     `json:"kind"`
	Value   string     `json:"value"`
	Source  string     `json:"source"`
	Reason  string     `json:"reason"`
	Created time.Time  `json:"created_at"`
	Until   *time.Time `json:"until"`
	// Node is the node whose failed-logins limiter banned an address
	// (each node counts its own); empty for a manual ban, held by every
	// node.
	Node string `json:"node,omitempty"`
}

func banOut(b *auth.Ban) banJSON {
	j := banJSON{Kind: b.Kind, Value: b.Value, Source: b.Source, Reason: b.Reason, Created: b.Created.UTC()}
	if !b.Until.IsZero() {
		t := b.Until.UTC()
		j.Until = &t
	}
	return j
}

type banCreate struct {
	Kind     string `json:"kind"`
	Value    string `json:"value"`
	Reason   string `json:"reason"`
	Duration int64  `json:"duration_seconds"`
}

// maxBanDuration bounds duration_seconds (ten years).
const maxBanDuration = 10 * 365 * 24 * 3600

func (s *Server) addBan(w http.ResponseWriter, r *http.Request) error {
	var req banCreate
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Duration < 0 || req.Duration > maxBanDuration {
		return badRequest("duration_seconds: want 0 (until lifted) to %d", maxBanDuration)
	}
	if len(req.Reason) > 1024 {
		return badRequest("reason: at most 1024 bytes")
	}
	b := auth.Ban{Kind: req.Kind, Value: req.Value, Reason: req.Reason}
	if req.Duration > 0 {
		b.Until = time.Now().Add(time.Duration(req.Duration) * time.Second)
	}
	j := banOut(&b)
	b, missing, err := s.broadcastBan(r, &j)
	if err != nil {
		return badRequest("%v", err)
	}
	setMissing(w, missing)
	return writeJSON(w, http.StatusCreated, banOut(&b))
}

// kickBanned disconnects the connected clients a new ban matches.
func (s *Server) kickBanned(b *auth.Ban) int {
	match := func(c *broker.ClientSnapshot) bool {
		switch b.Kind {
		case auth.BanClientID:
			return c.ClientID == b.Value
		case auth.BanUsername:
			return c.Username == b.Value
		}
		a, err := net.ResolveTCPAddr("tcp", c.Remote)
		return err == nil && auth.AddrKey(a) == b.Value
	}
	n := 0
	for _, c := range s.opts.Broker.Clients(func(c *broker.ClientSnapshot) bool { return c.Connected && match(c) }) {
		if s.opts.Broker.Disconnect(c.ClientID, packet.ErrAdministrativeAction) {
			n++
		}
	}
	return n
}

type userJSON struct {
	Username  string `json:"username"`
	Superuser bool   `json:"superuser"`
	Hash      string `json:"hash"`
	SCRAM     bool   `json:"scram"`
}

func userOut(u *auth.User) userJSON {
	kind := "bcrypt"
	if strings.HasPrefix(u.Hash, "$argon2id$") {
		kind = "argon2id"
	}
	return userJSON{Username: u.Name, Superuser: u.Superuser, Hash: kind, SCRAM: u.SCRAM != ""}
}

var errNoUsersFile = errorf(http.StatusConflict, "not_configured", "no users file: set auth.users_file")

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	u := s.opts.Auth.Users()
	if u == nil {
		return errNoUsersFile
	}
	out := []userJSON{}
	for _, x := range u.List() {
		out = append(out, userOut(x))
	}
	return writeJSON(w, http.StatusOK, out)
}

type userCreate struct {
	Username  string `json:"username"`
	Password  string `json:"password"`
	Superuser bool   `json:"superuser"`
	SCRAM     bool   `json:"scram"`
}

type userUpdate struct {
	Password  string `json:"password"`
	Superuser *bool  `json:"superuser"`
}

// devicePassword checks a device password as `culex users` does.
func devicePassword(pw string) error {
	switch {
	case pw == "":
		return badRequest("password is required")
	case len(pw) > 72:
		return badRequest("password: at most 72 bytes (bcrypt's limit)")
	}
	return nil
}

// editUsers runs fn on the users file and maps its errors.
func (s *Server) editUsers(fn func(*auth.Users) error) error {
	err := s.opts.Auth.EditUsers(fn)
	var e *Error
	switch {
	case errors.Is(err, auth.ErrNoUsersFile):
		return errNoUsersFile
	case errors.As(err, &e):
		return e
	}
	return err
}

// userHashCost is the bcrypt cost of device passwords set through the API
// (0: bcrypt's default, as culex users); tests lower it.
var userHashCost = 0

// hashUser sets x's hash (and SCRAM credentials when scram) for pw.
func hashUser(x *auth.User, pw string, scram bool) error {
	h, err := auth.HashBcrypt(pw, userHashCost)
	if err != nil {
		return err
	}
	x.Hash, x.SCRAM = h, ""
	if scram {
		if x.SCRAM, err = auth.NewSCRAMCreds(pw); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) addUser(w http.ResponseWriter, r *http.Request) error {
	var req userCreate
	if err := decode(r, &req); err != nil {
		return err
	}
	if err := devicePassword(req.Password); err != nil {
		return err
	}
	x := &auth.User{Name: req.Username, Superuser: req.Superuser}
	err := s.editUsers(func(u *auth.Users) error {
		if _, ok := u.Get(req.Username); ok {
			return conflict("user %q exists", req.Username)
		}
		if err := hashUser(x, req.Password, req.SCRAM); err != nil {
			return err
		}
		if err := u.Put(x); err != nil {
			return badRequest("%v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("admin: device user added", "username", x.Name, "superuser", x.Superuser, "by", caller(r).name)
	return writeJSON(w, http.StatusCreated, userOut(x))
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) error {
	var req userUpdate
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Password != "" {
		if err := devicePassword(req.Password); err != nil {
			return err
		}
	}
	name := r.PathValue("username")
	var out auth.User
	err := s.editUsers(func(u *auth.Users) error {
		old, ok := u.Get(name)
		if !ok {
			return notFound("no user %q", name)
		}
		x := *old
		if req.Superuser != nil {
			x.Superuser = *req.Superuser
		}
		if req.Password != "" {
			if err := hashUser(&x, req.Password, old.SCRAM != ""); err != nil {
				return err
			}
		}
		out = x
		return u.Put(&x)
	})
	if err != nil {
		return err
	}
	s.log.Info("admin: device user changed", "username", name, "password", req.Password != "", "by", caller(r).name)
	return writeJSON(w, http.StatusOK, userOut(&out))
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("username")
	err := s.editUsers(func(u *auth.Users) error {
		if !u.Delete(name) {
			return notFound("no user %q", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("admin: device user removed", "username", name, "by", caller(r).name)
	return noContent(w)
}

type aclRuleJSON struct {
	Permission string `json:"permission"`
	Action     string `json:"action"`
	Topic      string `json:"topic"`
	Scope      string `json:"scope"`
	Name       string `json:"name,omitempty"`
}

type aclJSON struct {
	File             string        `json:"file"`
	UsersFile        string        `json:"users_file"`
	Default          string        `json:"default"`
	SysSuperuserOnly bool          `json:"sys_superuser_only"`
	Rules            []aclRuleJSON `json:"rules"`
}

func (s *Server) aclOut() aclJSON {
	a := s.opts.Auth.ACL()
	j := aclJSON{File: s.opts.Auth.ACLFile(), UsersFile: s.opts.Config.Auth.UsersFile, Default: "deny", SysSuperuserOnly: a.SysSuperuserOnly(), Rules: []aclRuleJSON{}}
	if a.DefaultAllow() {
		j.Default = "allow"
	}
	for _, x := range a.Rules() {
		p := "deny"
		if x.Allow {
			p = "allow"
		}
		j.Rules = append(j.Rules, aclRuleJSON{Permission: p, Action: x.Action.String(), Topic: x.Filter,
			Scope: x.Scope.Kind.String(), Name: x.Scope.Name})
	}
	return j
}

func (s *Server) getACL(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.aclOut())
}

func (s *Server) reloadACL(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Reload != nil {
		if err := s.opts.Reload(); err != nil {
			return errorf(http.StatusUnprocessableEntity, "reload_failed", "%v (the previous files stay in force)", err)
		}
	}
	s.log.Info("admin: users and ACL files reloaded", "by", caller(r).name)
	return writeJSON(w, http.StatusOK, s.aclOut())
}
