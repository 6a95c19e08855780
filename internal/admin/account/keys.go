package account

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"sort"
	"time"
)

// token returns n random bytes in hex.
func token(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewKey creates an API key on behalf of the account by and returns it
// with its secret, which is not kept. The key never has more rights than
// its account has at the time of use (VerifyKey), and goes with it
// (DeleteAccount).
func (s *Store) NewKey(name, role, by string) (Key, string, error) {
	if err := errors.Join(CheckName(name), CheckRole(role)); err != nil {
		return Key{}, "", err
	}
	secret := token(32)
	sum := sha256.Sum256([]byte(secret))
	k := &Key{ID: "ck_" + token(8), Name: name, Role: role, Hash: hex.EncodeToString(sum[:]), Created: time.Now().UTC(), CreatedBy: by}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.accounts[by]; !ok {
		return Key{}, "", ErrNotFound
	}
	s.keys[k.ID] = k
	if err := s.saveLocked(); err != nil {
		delete(s.keys, k.ID)
		return Key{}, "", err
	}
	return *k, secret, nil
}

// VerifyKey returns the key id whose secret is secret, with the role it
// has now: the lower of its own and its creating account's (a key whose
// account is gone is refused).
func (s *Store) VerifyKey(id, secret string) (Key, bool) {
	sum := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return Key{}, false
	}
	want, err := hex.DecodeString(k.Hash)
	if err != nil || subtle.ConstantTimeCompare(want, sum[:]) != 1 {
		return Key{}, false
	}
	owner, ok := s.accounts[k.CreatedBy]
	if !ok {
		return Key{}, false
	}
	k.LastUsed = time.Now().UTC()
	out := *k
	if owner.Role != RoleAdmin {
		out.Role = RoleViewer
	}
	return out, true
}

// Keys lists the API keys by id.
func (s *Store) Keys() []Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Key
	for _, k := range s.keysLocked() {
		out = append(out, *k)
	}
	return out
}

func (s *Store) keysLocked() []*Key {
	out := make([]*Key, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// DeleteKey revokes an API key.
func (s *Store) DeleteKey(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return ErrNotFound
	}
	delete(s.keys, id)
	if err := s.saveLocked(); err != nil {
		s.keys[id] = k
		return err
	}
	return nil
}
