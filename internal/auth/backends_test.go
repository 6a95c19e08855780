package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/testcert"
)

func TestWebhook(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req webhookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Method != http.MethodPost {
			http.Error(w, "bad request", 400)
			return
		}
		switch {
		case req.Username == "slow":
			<-r.Context().Done() // never answers: the client times out
		case req.Username == "broken":
			http.Error(w, "oops", 500)
		case req.Username == "dev-1" && req.Password == "s1" && req.Peer != "":
			json.NewEncoder(w).Encode(map[string]any{"result": "allow", "superuser": false,
				"acl": []map[string]string{{"permission": "allow", "action": "publish", "topic": "devices/${username}/#"}}})
		case req.Username == "skip":
			w.Write([]byte(`{"result":"ignore"}`))
		default:
			w.Write([]byte(`{"result":"deny"}`))
		}
	}))
	defer srv.Close()
	wh := &Webhook{URL: srv.URL, Timeout: 50 * time.Millisecond, CacheTTL: time.Minute}
	ctx := context.Background()
	res, err := wh.Authenticate(ctx, login("dev-1", "s1"))
	if err != nil || res.Verdict != Allow || len(res.ACL) != 1 {
		t.Fatalf("allow: %+v %v", res, err)
	}
	acl := NewACL(nil, false, true)
	id := &Identity{Username: "dev-1", ACL: res.ACL}
	if !acl.Check(id, Publish, "devices/dev-1/x") || acl.Check(id, Publish, "devices/dev-2/x") {
		t.Error("webhook ACL not applied")
	}
	wh.Authenticate(ctx, login("dev-1", "s1"))
	if calls.Load() != 1 {
		t.Errorf("cached answer asked again: %d calls", calls.Load())
	}
	if res, _ := wh.Authenticate(ctx, login("dev-1", "s2")); res.Verdict != Deny {
		t.Error("wrong password allowed")
	}
	if res, _ := wh.Authenticate(ctx, login("skip", "x")); res.Verdict != Ignore {
		t.Error("ignore answer")
	}
	for _, u := range []string{"slow", "broken"} {
		if _, err := wh.Authenticate(ctx, login(u, "x")); err == nil {
			t.Errorf("%s: no error (deny policy)", u)
		}
	}
	next := &Webhook{URL: srv.URL, Timeout: 50 * time.Millisecond, NextOnError: true}
	if res, err := next.Authenticate(ctx, login("broken", "x")); err != nil || res.Verdict != Ignore {
		t.Errorf("next policy: %+v %v", res, err)
	}
}

func signJWT(t *testing.T, alg, kid string, key any, claims map[string]any) string {
	t.Helper()
	hdr := map[string]string{"alg": alg, "typ": "JWT"}
	if kid != "" {
		hdr["kid"] = kid
	}
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	signed := b64url.EncodeToString(h) + "." + b64url.EncodeToString(c)
	digest := sha256.Sum256([]byte(signed))
	var sig []byte
	switch k := key.(type) {
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(signed))
		sig = m.Sum(nil)
	case *rsa.PrivateKey:
		sig, _ = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
	case *ecdsa.PrivateKey:
		r, s, _ := ecdsa.Sign(rand.Reader, k, digest[:])
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
	}
	return signed + "." + b64url.EncodeToString(sig)
}

func jwtLogin(user, token string) *Request {
	r := login(user, token)
	r.HasUsername = user != ""
	return r
}

func TestJWT(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now().Unix()
	good := func(extra map[string]any) map[string]any {
		c := map[string]any{"sub": "dev-1", "exp": now + 60}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	ctx := context.Background()
	hs := &JWT{Secret: secret, UsernameClaim: "username"}
	rs := &JWT{Key: &rsaKey.PublicKey}
	es := &JWT{Key: &ecKey.PublicKey, Issuer: "iss-1", Audience: "culex"}
	tests := []struct {
		name string
		j    *JWT
		user string
		tok  string
		want Verdict
	}{
		{"hs256", hs, "dev-1", signJWT(t, "HS256", "", secret, good(nil)), Allow},
		{"hs256 username claim", hs, "", signJWT(t, "HS256", "", secret, good(map[string]any{"username": "dev-2"})), Allow},
		{"hs256 wrong secret", hs, "dev-1", signJWT(t, "HS256", "", []byte("nope"), good(nil)), Deny},
		{"expired", hs, "dev-1", signJWT(t, "HS256", "", secret, good(map[string]any{"exp": now - 3600})), Deny},
		{"no exp", hs, "dev-1", signJWT(t, "HS256", "", secret, map[string]any{"sub": "dev-1"}), Deny},
		{"nbf in future", hs, "dev-1", signJWT(t, "HS256", "", secret, good(map[string]any{"nbf": now + 3600})), Deny},
		{"someone else's token", hs, "dev-2", signJWT(t, "HS256", "", secret, good(nil)), Deny},
		{"client id claim", hs, "dev-1", signJWT(t, "HS256", "", secret, good(map[string]any{"clientid": "other"})), Deny},
		{"alg none", hs, "dev-1", signJWT(t, "none", "", nil, good(nil)), Deny},
		{"rs256", rs, "dev-1", signJWT(t, "RS256", "", rsaKey, good(nil)), Allow},
		{"rs256 as hs256", rs, "dev-1", signJWT(t, "HS256", "", []byte("x"), good(nil)), Deny},
		{"es256", es, "dev-1", signJWT(t, "ES256", "", ecKey, good(map[string]any{"iss": "iss-1", "aud": []string{"culex"}})), Allow},
		{"es256 wrong aud", es, "dev-1", signJWT(t, "ES256", "", ecKey, good(map[string]any{"iss": "iss-1", "aud": "other"})), Deny},
		{"es256 with rs256 alg", es, "dev-1", signJWT(t, "RS256", "", rsaKey, good(map[string]any{"iss": "iss-1", "aud": "culex"})), Deny},
		{"not a jwt", hs, "dev-1", "password", Ignore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tt.j.Authenticate(ctx, jwtLogin(tt.user, tt.tok))
			if err != nil || res.Verdict != tt.want {
				t.Fatalf("verdict %v err %v, want %v", res.Verdict, err, tt.want)
			}
		})
	}
	tok := signJWT(t, "HS256", "", secret, good(map[string]any{"superuser": true,
		"acl": []map[string]string{{"permission": "deny", "action": "both", "topic": "x/#"}}}))
	res, _ := hs.Authenticate(ctx, jwtLogin("dev-1", tok))
	if !res.Superuser || len(res.ACL) != 1 || res.ACL[0].Allow || res.Username != "dev-1" {
		t.Errorf("claims: %+v", res)
	}
}

func TestJWKS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		ecdh, _ := ecKey.PublicKey.Bytes()
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
			{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64url.EncodeToString(rsaKey.N.Bytes()),
				"e": b64url.EncodeToString(big.NewInt(int64(rsaKey.E)).Bytes())},
			{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64url.EncodeToString(ecdh[1:33]), "y": b64url.EncodeToString(ecdh[33:])},
		}})
	}))
	defer srv.Close()
	j := &JWT{JWKS: &JWKS{URL: srv.URL, Refresh: time.Hour, MinInterval: time.Hour}}
	claims := map[string]any{"sub": "dev-1", "exp": time.Now().Unix() + 60}
	ctx := context.Background()
	for _, tok := range []string{signJWT(t, "RS256", "r1", rsaKey, claims), signJWT(t, "ES256", "e1", ecKey, claims)} {
		if res, err := j.Authenticate(ctx, jwtLogin("dev-1", tok)); err != nil || res.Verdict != Allow {
			t.Fatalf("jwks login: %+v %v", res, err)
		}
	}
	if res, _ := j.Authenticate(ctx, jwtLogin("dev-1", signJWT(t, "RS256", "zz", rsaKey, claims))); res.Verdict != Deny {
		t.Error("unknown kid allowed")
	}
	if res, _ := j.Authenticate(ctx, jwtLogin("dev-1", signJWT(t, "ES256", "r1", ecKey, claims))); res.Verdict != Deny {
		t.Error("ES256 token verified with an RSA key")
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1 (refresh and min interval an hour)", n)
	}
}

func TestLoadPublicKey(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	path := filepath.Join(t.TempDir(), "k.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	k, err := LoadPublicKey(path)
	if err != nil || !k.(*ecdsa.PublicKey).Equal(&ecKey.PublicKey) {
		t.Fatalf("LoadPublicKey: %v", err)
	}
}

func TestCert(t *testing.T) {
	ca := testcert.NewCA(t, "test ca")
	client := ca.Client(t, "dev-7", "dev-7.devices.example").Leaf
	stranger := testcert.NewCA(t, "test ca").Client(t, "dev-8", "dev-8.devices.example").Leaf
	path := ca.WriteFile(t, t.TempDir(), "ca.pem")
	c, err := NewCert(path, "cn")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := &Request{ClientID: "x", TLS: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{client}}}
	res, err := c.Authenticate(ctx, r)
	if err != nil || res.Verdict != Allow || res.Username != "dev-7" || res.CertCN != "dev-7" {
		t.Fatalf("cn: %+v %v", res, err)
	}
	c.From = "san_dns"
	if res, _ := c.Authenticate(ctx, r); res.Username != "dev-7.devices.example" {
		t.Errorf("san_dns: %q", res.Username)
	}
	r.TLS.PeerCertificates = []*x509.Certificate{stranger}
	if res, _ := c.Authenticate(ctx, r); res.Verdict != Deny {
		t.Error("certificate from another CA allowed")
	}
	if res, _ := c.Authenticate(ctx, &Request{}); res.Verdict != Ignore {
		t.Error("no certificate not ignored")
	}
	if _, err := NewCert(path, "serial"); err == nil {
		t.Error("bad username_from accepted")
	}
}
