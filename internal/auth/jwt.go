package auth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// JWT verifies a JSON Web Token given as the MQTT password (RFC 7519,
// RFC 7515 compact form). Only HS256, RS256 and ES256 are accepted, and
// each only with a key of its own kind, so that an attacker cannot pick
// the algorithm ("none", or HS256 with a public key as the secret). exp is
// required; nbf, iss and aud are checked when present or configured.
type JWT struct {
	Secret []byte           // HS256
	Key    crypto.PublicKey // RS256 or ES256, from a PEM file
	JWKS   *JWKS            // RS256 or ES256 keys by kid
	// Issuer and Audience, when set, must match iss and aud.
	Issuer, Audience string
	// UsernameClaim becomes the username; sub when the claim is absent.
	UsernameClaim string
	Leeway        time.Duration
	now           func() time.Time
}

// jwtClaims are the claims Culex reads.
type jwtClaims struct {
	Exp       *json.Number    `json:"exp"`
	Nbf       *json.Number    `json:"nbf"`
	Iss       string          `json:"iss"`
	Aud       json.RawMessage `json:"aud"`
	Sub       string          `json:"sub"`
	ClientID  string          `json:"clientid"`
	Superuser bool            `json:"superuser"`
	ACL       json.RawMessage `json:"acl"`
}

var errJWT = fmt.Errorf("%w: jwt", packet.ErrBadUsernameOrPassword)

// looksLikeJWT reports whether a password has a JWS compact form with a
// JSON header: anything else is left to other backends.
func looksLikeJWT(p []byte) bool {
	return bytes.HasPrefix(p, []byte("eyJ")) && bytes.Count(p, []byte(".")) == 2
}

// Name implements Authenticator.
func (j *JWT) Name() string { return "jwt" }

// Authenticate implements Authenticator.
func (j *JWT) Authenticate(ctx context.Context, r *Request) (Result, error) {
	if !r.HasPassword || !looksLikeJWT(r.Password) {
		return Result{}, nil
	}
	raw, err := j.verify(ctx, string(r.Password))
	if err != nil {
		return Result{Verdict: Deny, Code: packet.ErrBadUsernameOrPassword}, nil
	}
	var c jwtClaims
	var all map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&c) != nil || json.Unmarshal(raw, &all) != nil {
		return Result{Verdict: Deny}, nil
	}
	if err := j.checkClaims(&c); err != nil {
		return Result{Verdict: Deny}, nil
	}
	name := c.Sub
	if j.UsernameClaim != "" {
		if v, ok := all[j.UsernameClaim]; ok {
			if json.Unmarshal(v, &name) != nil {
				return Result{Verdict: Deny}, nil
			}
		}
	}
	switch {
	case name == "":
		return Result{Verdict: Deny}, nil
	case r.HasUsername && r.Username != "" && r.Username != name:
		return Result{Verdict: Deny}, nil // the token is someone else's
	case c.ClientID != "" && c.ClientID != r.ClientID:
		return Result{Verdict: Deny}, nil
	}
	rules, err := parseJSONRules(c.ACL)
	if err != nil {
		return Result{Verdict: Deny}, nil
	}
	exp, _ := c.Exp.Float64() // checkClaims parsed it
	return Result{Verdict: Allow, Username: name, Superuser: c.Superuser, ACL: rules,
		Expires: time.Unix(int64(exp), 0).Add(j.Leeway)}, nil
}

func (j *JWT) checkClaims(c *jwtClaims) error {
	now := time.Now()
	if j.now != nil {
		now = j.now()
	}
	if c.Exp == nil {
		return fmt.Errorf("%w: no exp", errJWT)
	}
	if exp, err := c.Exp.Float64(); err != nil || now.After(time.Unix(int64(exp), 0).Add(j.Leeway)) {
		return fmt.Errorf("%w: expired", errJWT)
	}
	if c.Nbf != nil {
		if nbf, err := c.Nbf.Float64(); err != nil || now.Add(j.Leeway).Before(time.Unix(int64(nbf), 0)) {
			return fmt.Errorf("%w: not yet valid", errJWT)
		}
	}
	if j.Issuer != "" && c.Iss != j.Issuer {
		return fmt.Errorf("%w: issuer", errJWT)
	}
	if j.Audience != "" && !audienceHas(c.Aud, j.Audience) {
		return fmt.Errorf("%w: audience", errJWT)
	}
	return nil
}

func audienceHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}

var b64url = base64.RawURLEncoding

// verify checks the token's signature and returns its payload.
func (j *JWT) verify(ctx context.Context, token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errJWT
	}
	hdrRaw, err1 := b64url.DecodeString(parts[0])
	payload, err2 := b64url.DecodeString(parts[1])
	sig, err3 := b64url.DecodeString(parts[2])
	if errors.Join(err1, err2, err3) != nil {
		return nil, fmt.Errorf("%w: encoding", errJWT)
	}
	var hdr struct {
		Alg  string `json:"alg"`
		Kid  string `json:"kid"`
		Crit []any  `json:"crit"`
	}
	if json.Unmarshal(hdrRaw, &hdr) != nil || hdr.Crit != nil {
		return nil, fmt.Errorf("%w: header", errJWT)
	}
	signed := []byte(parts[0] + "." + parts[1])
	digest := sha256.Sum256(signed)
	switch hdr.Alg {
	case "HS256":
		if len(j.Secret) == 0 {
			return nil, fmt.Errorf("%w: HS256 without a secret", errJWT)
		}
		m := hmac.New(sha256.New, j.Secret)
		m.Write(signed)
		if !hmac.Equal(m.Sum(nil), sig) {
			return nil, fmt.Errorf("%w: signature", errJWT)
		}
		return payload, nil
	case "RS256", "ES256":
		key := j.Key
		if j.JWKS != nil && (hdr.Kid != "" || key == nil) {
			k, err := j.JWKS.Key(ctx, hdr.Kid)
			if err != nil {
				return nil, err
			}
			key = k
		}
		if !verifyAsym(hdr.Alg, key, digest[:], sig) {
			return nil, fmt.Errorf("%w: signature", errJWT)
		}
		return payload, nil
	}
	return nil, fmt.Errorf("%w: algorithm %q", errJWT, hdr.Alg)
}

func verifyAsym(alg string, key crypto.PublicKey, digest, sig []byte) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return alg == "RS256" && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil
	case *ecdsa.PublicKey:
		if alg != "ES256" || k.Curve != elliptic.P256() || len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// LoadPublicKey reads a PEM public key (PKIX "PUBLIC KEY", PKCS#1 "RSA
// PUBLIC KEY") or the key of a PEM certificate.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a public key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		return key, nil
	}
	return nil, fmt.Errorf("%s: key type %T: want RSA or EC P-256", path, key)
}
