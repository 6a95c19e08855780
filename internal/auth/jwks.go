package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// JWKS is a JWK Set (RFC 7517) fetched from a URL and kept for Refresh. An
// unknown kid fetches the set again, at most once per MinInterval, so that
// a key rotation is picked up without letting clients hammer the issuer.
type JWKS struct {
	URL         string
	Client      *http.Client
	Refresh     time.Duration
	MinInterval time.Duration

	// fetchMu serialises fetches; mu guards the fields below it. Lock
	// order: fetchMu, then mu.
	fetchMu sync.Mutex
	mu      sync.Mutex
	keys    map[string]crypto.PublicKey
	fetched time.Time
	tried   time.Time
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// Key returns the key with kid ("" when the set has exactly one key).
func (s *JWKS) Key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if k, fresh := s.lookup(kid); k != nil && fresh {
		return k, nil
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	k, fresh := s.lookup(kid)
	if k != nil && fresh {
		return k, nil
	}
	s.mu.Lock()
	wait := time.Since(s.tried) < s.MinInterval
	s.mu.Unlock()
	if !wait {
		if err := s.fetch(ctx); err != nil && k == nil {
			return nil, err
		}
		k, _ = s.lookup(kid)
	}
	if k == nil {
		return nil, fmt.Errorf("%w: no key %q in the JWK set", errJWT, kid)
	}
	return k, nil
}

func (s *JWKS) lookup(kid string) (crypto.PublicKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := s.Refresh <= 0 || time.Since(s.fetched) < s.Refresh
	if kid == "" && len(s.keys) == 1 {
		for _, k := range s.keys {
			return k, fresh
		}
	}
	return s.keys[kid], fresh
}

func (s *JWKS) fetch(ctx context.Context) error {
	s.mu.Lock()
	s.tried = time.Now()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks: %s: status %s", s.URL, resp.Status)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("jwks: %s: %w", s.URL, err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if pk, err := k.public(); err == nil {
			keys[k.Kid] = pk
		}
	}
	s.mu.Lock()
	s.keys, s.fetched = keys, time.Now()
	s.mu.Unlock()
	return nil
}

func (k *jwk) public() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64url.DecodeString(k.N)
		e, err2 := b64url.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(e) > 4 || len(n) < 256 {
			return nil, fmt.Errorf("jwk %q: bad RSA key", k.Kid)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		x, err1 := b64url.DecodeString(k.X)
		y, err2 := b64url.DecodeString(k.Y)
		if k.Crv != "P-256" || err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("jwk %q: bad EC key", k.Kid)
		}
		raw := append(append([]byte{4}, x...), y...)
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	}
	return nil, fmt.Errorf("jwk %q: key type %q", k.Kid, k.Kty)
}
