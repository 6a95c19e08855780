package auth

import (
	"errors"
	"fmt"
)

// What the admin API manages: the users file, and a view of the ACL.

// ErrNoUsersFile is EditUsers' error when auth.users_file is not set.
var ErrNoUsersFile = errors.New("no users file (auth.users_file)")

// Users returns the users file as last loaded (nil without one).
func (s *Service) Users() *Users {
	if s.users == nil {
		return nil
	}
	return s.users.Users()
}

// EditUsers reads the users file, lets fn change it, writes it back (as
// `culex users` does) and reloads it at once, so that the clients of a
// removed user or a changed password are disconnected before EditUsers
// returns. fn's error leaves the file as it was. Edits are serialised.
func (s *Service) EditUsers(fn func(*Users) error) error {
	if s.users == nil {
		return ErrNoUsersFile
	}
	s.editMu.Lock()
	defer s.editMu.Unlock()
	u, err := LoadUsers(s.cfg.UsersFile)
	if err != nil {
		return err
	}
	if err := fn(u); err != nil {
		return err
	}
	if err := SaveUsers(s.cfg.UsersFile, u); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return s.Reload()
}

// ACLFile is the ACL file's path ("" for none).
func (s *Service) ACLFile() string { return s.cfg.ACLFile }

// Rules returns the file's rules in order.
func (a *ACL) Rules() []Rule { return append([]Rule(nil), a.rules...) }

// DefaultAllow is the answer when no rule matches.
func (a *ACL) DefaultAllow() bool { return a.defaultAllow }

// SysSuperuserOnly reports whether $SYS topics are for superusers only.
func (a *ACL) SysSuperuserOnly() bool { return a.sysSuperOnly }

// String is the scope's kind as the admin API shows it.
func (k ScopeKind) String() string {
	switch k {
	case ScopeUser:
		return "user"
	case ScopeClient:
		return "client"
	case ScopeAnonymous:
		return "anonymous"
	}
	return "all"
}
