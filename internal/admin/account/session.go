package account

import (
	"crypto/sha256"
	"time"
)

// SessionKey is what the store keeps of a session token: its SHA-256.
func SessionKey(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// NewSession starts a login session for name and returns its token.
func (s *Store) NewSession(name string) (string, Session) {
	tok := token(32)
	x := &Session{User: name, CSRF: token(16), Expires: time.Now().Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for k, old := range s.sessions { // expired ones go as new ones come
		if now.After(old.Expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[SessionKey(tok)] = x
	return tok, *x
}

// Session returns the live session of token tok and its account.
func (s *Store) Session(tok string) (Session, Account, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := SessionKey(tok)
	x, ok := s.sessions[k]
	if !ok {
		return Session{}, Account{}, false
	}
	a, ok := s.accounts[x.User]
	if !ok || time.Now().After(x.Expires) {
		delete(s.sessions, k)
		return Session{}, Account{}, false
	}
	return *x, *a, true
}

// EndSession logs a session out.
func (s *Store) EndSession(tok string) {
	s.mu.Lock()
	delete(s.sessions, SessionKey(tok))
	s.mu.Unlock()
}

func (s *Store) endSessionsLocked(name string) {
	maps := s.sessions
	for k, x := range maps {
		if x.User == name {
			delete(maps, k)
		}
	}
}
