package admin

import (
	"net/http"
	"time"

	"github.com/culexmq/culex/internal/admin/account"
)

type accountJSON struct {
	Username   string    `json:"username"`
	Role       string    `json:"role"`
	MustChange bool      `json:"must_change_password"`
	Created    time.Time `json:"created_at"`
}

func accountOut(a *account.Account) accountJSON {
	return accountJSON{Username: a.Name, Role: a.Role, MustChange: a.MustChange, Created: a.Created}
}

func (s *Server) listAccounts(w http.ResponseWriter, r *http.Request) error {
	out := []accountJSON{}
	for _, a := range s.accounts.Accounts() {
		out = append(out, accountOut(&a))
	}
	return writeJSON(w, http.StatusOK, out)
}

type accountCreate struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Role     string `json:"role"`
}

func (s *Server) addAccount(w http.ResponseWriter, r *http.Request) error {
	var req accountCreate
	if err := decode(r, &req); err != nil {
		return err
	}
	a, err := s.accounts.AddAccount(req.Username, req.Password, req.Role)
	if err != nil {
		return accountError(err)
	}
	s.log.Info("admin: account added", "user", a.Name, "role", a.Role, "by", caller(r).name)
	return writeJSON(w, http.StatusCreated, accountOut(&a))
}

type accountUpdate struct {
	Password string `json:"password"`
	Role     string `json:"role"`
}

func (s *Server) updateAccount(w http.ResponseWriter, r *http.Request) error {
	var req accountUpdate
	if err := decode(r, &req); err != nil {
		return err
	}
	a, err := s.accounts.UpdateAccount(r.PathValue("username"), req.Password, req.Role)
	if err != nil {
		return accountError(err)
	}
	s.log.Info("admin: account changed", "user", a.Name, "role", a.Role, "password", req.Password != "", "by", caller(r).name)
	return writeJSON(w, http.StatusOK, accountOut(&a))
}

func (s *Server) deleteAccount(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("username")
	if err := s.accounts.DeleteAccount(name); err != nil {
		return accountError(err)
	}
	s.log.Info("admin: account removed", "user", name, "by", caller(r).name)
	return noContent(w)
}

type keyJSON struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Created   time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	LastUsed  *time.Time `json:"last_used_at"`
	Secret    string     `json:"secret,omitempty"`
	Key       string     `json:"key,omitempty"`
}

func keyOut(k *account.Key) keyJSON {
	j := keyJSON{ID: k.ID, Name: k.Name, Role: k.Role, Created: k.Created, CreatedBy: k.CreatedBy}
	if !k.LastUsed.IsZero() {
		t := k.LastUsed
		j.LastUsed = &t
	}
	return j
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) error {
	out := []keyJSON{}
	for _, k := range s.accounts.Keys() {
		out = append(out, keyOut(&k))
	}
	return writeJSON(w, http.StatusOK, out)
}

type keyCreate struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func (s *Server) addKey(w http.ResponseWriter, r *http.Request) error {
	var req keyCreate
	if err := decode(r, &req); err != nil {
		return err
	}
	k, secret, err := s.accounts.NewKey(req.Name, req.Role, caller(r).account)
	if err != nil {
		return accountError(err)
	}
	s.log.Info("admin: API key created", "id", k.ID, "name", k.Name, "role", k.Role, "by", caller(r).name)
	j := keyOut(&k)
	j.Secret, j.Key = secret, k.ID+":"+secret
	return writeJSON(w, http.StatusCreated, j)
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.accounts.DeleteKey(id); err != nil {
		return accountError(err)
	}
	s.log.Info("admin: API key revoked", "id", id, "by", caller(r).name)
	return noContent(w)
}
