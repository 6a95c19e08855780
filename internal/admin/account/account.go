// Package account keeps the admin listener's principals: dashboard
// accounts (role admin or viewer, bcrypt password hashes), API keys (a key
// id and a random secret stored as its SHA-256) and login sessions (in
// memory, a random token and its CSRF token). Accounts and keys live in
// one JSON file (data_dir/admin.json, mode 0600), or in memory only when
// there is no data dir.
package account

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/culexmq/culex/internal/atomicfile"
	"golang.org/x/crypto/bcrypt"
)

// Roles.
const (
	RoleAdmin  = "admin"
	RoleViewer = "viewer"
)

// The first start's account.
const (
	DefaultUser     = "admin"
	DefaultPassword = "public"
)

// Errors the API maps to codes.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrBadLogin     = errors.New("wrong username or password")
	ErrLastAdmin    = errors.New("the last admin account cannot be removed or made a viewer")
	ErrSamePassword = Invalid("the new password must differ from the old one")
)

// Account is a dashboard login.
type Account struct {
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Hash       string    `json:"hash"`
	MustChange bool      `json:"must_change_password,omitempty"`
	Created    time.Time `json:"created_at"`
}

// Key is an API key; Hash is the hex SHA-256 of its secret (a random 256
// bit value, so a fast hash is as good as a slow one).
type Key struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      string    `json:"hash"`
	Created   time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
	LastUsed  time.Time `json:"-"`
}

// Session is one dashboard login.
type Session struct {
	User    string
	CSRF    string
	Expires time.Time
}

type file struct {
	Accounts []*Account `json:"accounts"`
	Keys     []*Key     `json:"api_keys"`
}

// Store holds the accounts, keys and sessions. Safe for concurrent use.
type Store struct {
	path string // "" in memory
	ttl  time.Duration
	cost int

	decoyOnce sync.Once
	decoyHash []byte

	// mu guards the maps.
	mu       sync.Mutex
	accounts map[string]*Account
	keys     map[string]*Key
	sessions map[[32]byte]*Session
}

// Options configure Open.
type Options struct {
	// Path is the JSON file; empty keeps everything in memory.
	Path string
	// DefaultPassword, when set, is the first admin's password (no forced
	// change); otherwise the first admin is admin/public and must change it.
	DefaultPassword string
	// SessionTTL is a login's lifetime.
	SessionTTL time.Duration
	// BcryptCost is the cost of new hashes (0: Cost).
	BcryptCost int
}

// Open loads the store, creating the first admin account when there is
// none. It reports whether it did, and with which password kind.
func Open(o Options) (*Store, bool, error) {
	s := &Store{path: o.Path, ttl: o.SessionTTL, cost: o.BcryptCost, accounts: map[string]*Account{},
		keys: map[string]*Key{}, sessions: map[[32]byte]*Session{}}
	if s.cost == 0 {
		s.cost = Cost
	}
	if s.ttl <= 0 {
		s.ttl = 8 * time.Hour
	}
	if err := s.load(); err != nil {
		return nil, false, err
	}
	if len(s.accounts) > 0 {
		return s, false, nil
	}
	pw, must, cost := o.DefaultPassword, false, s.cost
	if pw == "" {
		// The well-known password needs no costly hash, and every node
		// start (every test's) would pay for one.
		pw, must, cost = DefaultPassword, true, bcrypt.MinCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return nil, false, err
	}
	s.accounts[DefaultUser] = &Account{Name: DefaultUser, Role: RoleAdmin, Hash: string(h), MustChange: must, Created: time.Now().UTC()}
	if err := s.saveLocked(); err != nil {
		return nil, false, err
	}
	return s, true, nil
}

func (s *Store) load() error {
	if s.path == "" {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	for _, a := range f.Accounts {
		if a == nil || a.Name == "" || (a.Role != RoleAdmin && a.Role != RoleViewer) || !strings.HasPrefix(a.Hash, "$2") {
			return fmt.Errorf("%s: an account without a name, role or bcrypt hash", s.path)
		}
		s.accounts[a.Name] = a
	}
	for _, k := range f.Keys {
		if k == nil || k.ID == "" || len(k.Hash) != 64 || (k.Role != RoleAdmin && k.Role != RoleViewer) {
			return fmt.Errorf("%s: an API key without an id, role or hash", s.path)
		}
		s.keys[k.ID] = k
	}
	return nil
}

// saveLocked writes the file atomically (temporary file, fsync, rename).
func (s *Store) saveLocked() error {
	if s.path == "" {
		return nil
	}
	var f file
	for _, a := range s.accountsLocked() {
		f.Accounts = append(f.Accounts, a)
	}
	for _, k := range s.keysLocked() {
		f.Keys = append(f.Keys, k)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, append(data, '\n'), 0o600)
}

func (s *Store) hash(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), s.cost)
	return string(h), err
}

// Cost is the bcrypt cost of new password hashes; tests lower it.
var Cost = bcrypt.DefaultCost

// decoy returns a hash at the store's cost that no password matches, made
// once: a login for an unknown name checks it, costing what a known one
// does.
func (s *Store) decoy() []byte {
	s.decoyOnce.Do(func() { s.decoyHash, _ = bcrypt.GenerateFromPassword([]byte(token(16)), s.cost) })
	return s.decoyHash
}

// Invalid is a refused value (name, password, role).
type Invalid string

func (e Invalid) Error() string { return string(e) }

// CheckPassword refuses passwords bcrypt cannot hold or that are too short.
func CheckPassword(pw string) error {
	switch {
	case len(pw) < 8:
		return Invalid("password: at least 8 bytes")
	case len(pw) > 72:
		return Invalid("password: at most 72 bytes (bcrypt's limit)")
	}
	return nil
}

// CheckName refuses empty, over-long or control-character names.
func CheckName(name string) error {
	switch {
	case name == "" || len(name) > 128:
		return Invalid("name: 1 to 128 bytes")
	case !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return Invalid("name: not printable UTF-8")
	case strings.TrimSpace(name) != name:
		return Invalid("name: starts or ends with white space")
	}
	return nil
}

// CheckRole refuses roles other than admin and viewer.
func CheckRole(role string) error {
	if role != RoleAdmin && role != RoleViewer {
		return Invalid(fmt.Sprintf("role %q: want admin or viewer", role))
	}
	return nil
}

// Login checks a name and password (the hash runs whether or not the
// account exists).
func (s *Store) Login(name, pw string) (Account, error) {
	s.mu.Lock()
	a, ok := s.accounts[name]
	var hash []byte
	if ok {
		hash = []byte(a.Hash)
	}
	s.mu.Unlock()
	if !ok {
		bcrypt.CompareHashAndPassword(s.decoy(), []byte(pw))
		return Account{}, ErrBadLogin
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil {
		return Account{}, ErrBadLogin
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok = s.accounts[name]; !ok {
		return Account{}, ErrBadLogin
	}
	return *a, nil
}

// Account returns the account name.
func (s *Store) Account(name string) (Account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[name]
	if !ok {
		return Account{}, false
	}
	return *a, true
}

// Accounts lists the accounts by name.
func (s *Store) Accounts() []Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Account
	for _, a := range s.accountsLocked() {
		out = append(out, *a)
	}
	return out
}

func (s *Store) accountsLocked() []*Account {
	out := make([]*Account, 0, len(s.accounts))
	for _, a := range s.accounts {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// AddAccount adds an account.
func (s *Store) AddAccount(name, pw, role string) (Account, error) {
	if err := errors.Join(CheckName(name), CheckPassword(pw), CheckRole(role)); err != nil {
		return Account{}, err
	}
	h, err := s.hash(pw)
	if err != nil {
		return Account{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[name]; ok {
		return Account{}, ErrExists
	}
	a := &Account{Name: name, Role: role, Hash: h, Created: time.Now().UTC()}
	s.accounts[name] = a
	if err := s.saveLocked(); err != nil {
		delete(s.accounts, name)
		return Account{}, err
	}
	return *a, nil
}

// UpdateAccount sets an account's role and/or password (empty: unchanged).
// A new password ends the account's sessions; one set by another admin
// must be changed at the next login.
func (s *Store) UpdateAccount(name, pw, role string) (Account, error) {
	if role != "" {
		if err := CheckRole(role); err != nil {
			return Account{}, err
		}
	}
	var h string
	if pw != "" {
		if err := CheckPassword(pw); err != nil {
			return Account{}, err
		}
		var err error
		if h, err = s.hash(pw); err != nil {
			return Account{}, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[name]
	if !ok {
		return Account{}, ErrNotFound
	}
	if role == RoleViewer && a.Role == RoleAdmin && s.adminsLocked() == 1 {
		return Account{}, ErrLastAdmin
	}
	old := *a
	if role != "" {
		a.Role = role
	}
	if h != "" {
		a.Hash, a.MustChange = h, true
	}
	if err := s.saveLocked(); err != nil {
		*a = old
		return Account{}, err
	}
	if h != "" {
		s.endSessionsLocked(name)
	}
	return *a, nil
}

// ChangePassword changes the password of name, who knows the old one,
// lifts a forced change, and ends the account's other sessions (keep).
func (s *Store) ChangePassword(name, old, pw string, keep [32]byte) (Account, error) {
	if err := CheckPassword(pw); err != nil {
		return Account{}, err
	}
	if old == pw {
		return Account{}, ErrSamePassword
	}
	if _, err := s.Login(name, old); err != nil {
		return Account{}, err
	}
	h, err := s.hash(pw)
	if err != nil {
		return Account{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[name]
	if !ok {
		return Account{}, ErrNotFound
	}
	prev := *a
	a.Hash, a.MustChange = h, false
	if err := s.saveLocked(); err != nil {
		*a = prev
		return Account{}, err
	}
	for k, x := range s.sessions {
		if x.User == name && k != keep {
			delete(s.sessions, k)
		}
	}
	return *a, nil
}

// DeleteAccount removes an account, its sessions and the API keys it
// created.
func (s *Store) DeleteAccount(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[name]
	if !ok {
		return ErrNotFound
	}
	if a.Role == RoleAdmin && s.adminsLocked() == 1 {
		return ErrLastAdmin
	}
	delete(s.accounts, name)
	var keys []*Key
	for id, k := range s.keys {
		if k.CreatedBy == name {
			keys = append(keys, k)
			delete(s.keys, id)
		}
	}
	if err := s.saveLocked(); err != nil {
		s.accounts[name] = a
		for _, k := range keys {
			s.keys[k.ID] = k
		}
		return err
	}
	s.endSessionsLocked(name)
	return nil
}

func (s *Store) adminsLocked() int {
	n := 0
	for _, a := range s.accounts {
		if a.Role == RoleAdmin {
			n++
		}
	}
	return n
}
