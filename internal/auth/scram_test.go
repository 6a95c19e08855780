package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// scramClient is the client side of RFC 5802 with SHA-256, written from
// the RFC independently of the server.
type scramClient struct {
	user, password, cnonce string
	firstBare, authMsg     string
	saltedPassword         []byte
}

func (c *scramClient) first() []byte {
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
	c.firstBare = "n=" + name + ",r=" + c.cnonce
	return []byte("n,," + c.firstBare)
}

func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	var nonce, salt64, iter string
	for _, a := range strings.Split(string(serverFirst), ",") {
		switch {
		case strings.HasPrefix(a, "r="):
			nonce = a[2:]
		case strings.HasPrefix(a, "s="):
			salt64 = a[2:]
		case strings.HasPrefix(a, "i="):
			iter = a[2:]
		}
	}
	if !strings.HasPrefix(nonce, c.cnonce) || len(nonce) == len(c.cnonce) {
		return nil, fmt.Errorf("server nonce %q", nonce)
	}
	salt, err := b64.DecodeString(salt64)
	if err != nil {
		return nil, err
	}
	n, _ := strconv.Atoi(iter)
	c.saltedPassword, _ = pbkdf2.Key(sha256.New, c.password, salt, n, 32)
	clientKey := hmacSHA256(c.saltedPassword, "Client Key")
	stored := sha256.Sum256(clientKey)
	without := "c=" + b64.EncodeToString([]byte("n,,")) + ",r=" + nonce
	c.authMsg = c.firstBare + "," + string(serverFirst) + "," + without
	sig := hmacSHA256(stored[:], c.authMsg)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return []byte(without + ",p=" + b64.EncodeToString(proof)), nil
}

func (c *scramClient) verify(serverFinal []byte) bool {
	want := "v=" + b64.EncodeToString(hmacSHA256(hmacSHA256(c.saltedPassword, "Server Key"), c.authMsg))
	return hmac.Equal([]byte(want), serverFinal)
}

func scramUsers(t *testing.T, name, pw string) func(string) (*User, bool) {
	creds, err := NewSCRAMCreds(pw)
	if err != nil {
		t.Fatal(err)
	}
	u := NewUsers()
	u.Put(&User{Name: name, Hash: "$2a$04$unused", SCRAM: creds})
	return u.Get
}

func TestSCRAM(t *testing.T) {
	lookup := scramUsers(t, "dev,=1", "pencil")
	tests := []struct {
		name, user, pw string
		ok             bool
	}{
		{"good", "dev,=1", "pencil", true},
		{"wrong password", "dev,=1", "pen", false},
		{"unknown user", "nobody", "pencil", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSCRAMServer(lookup, []byte("k"))
			c := &scramClient{user: tt.user, password: tt.pw, cnonce: "rOprNGfwEbeRWgbNEkqO"}
			sf, done, err := s.Step(c.first())
			if err != nil || done {
				t.Fatalf("first step: %v %v", done, err)
			}
			cf, err := c.final(sf)
			if err != nil {
				t.Fatal(err)
			}
			resp, done, err := s.Step(cf)
			if ok := err == nil && done; ok != tt.ok {
				t.Fatalf("final step: done %v err %v, want ok %v", done, err, tt.ok)
			}
			if !tt.ok {
				if s.User() != nil {
					t.Error("failed exchange has a user")
				}
				return
			}
			if !c.verify(resp) {
				t.Error("server signature does not verify")
			}
			if s.User() == nil || s.User().Name != tt.user {
				t.Errorf("User() = %v", s.User())
			}
			if _, _, err := s.Step(cf); err == nil {
				t.Error("a third step was accepted")
			}
		})
	}
}

func TestSCRAMUnknownUserLooksReal(t *testing.T) {
	lookup := scramUsers(t, "a", "p")
	s1 := NewSCRAMServer(lookup, []byte("k"))
	s2 := NewSCRAMServer(lookup, []byte("k"))
	r1, _, _ := s1.Step([]byte("n,,n=ghost,r=abc"))
	r2, _, _ := s2.Step([]byte("n,,n=ghost,r=abc"))
	salt := func(b []byte) string { _, s, _ := strings.Cut(string(b), ",s="); return s }
	if salt(r1) != salt(r2) || !strings.HasSuffix(string(r1), ",i="+strconv.Itoa(scramIterations)) {
		t.Errorf("made-up salt not stable: %s / %s", r1, r2)
	}
}

func TestSCRAMBadMessages(t *testing.T) {
	lookup := scramUsers(t, "a", "p")
	for _, first := range []string{"", "p=tls-unique,,n=a,r=x", "n,a=z,n=a,r=x", "n,,r=x", "n,,n=a", "n,,n=a=ZZ,r=x"} {
		if _, _, err := NewSCRAMServer(lookup, nil).Step([]byte(first)); err == nil {
			t.Errorf("client-first %q accepted", first)
		}
	}
	s := NewSCRAMServer(lookup, nil)
	s.Step([]byte("n,,n=a,r=x"))
	if _, _, err := s.Step([]byte("c=biws,r=wrongnonce,p=AAAA")); err == nil {
		t.Error("wrong nonce accepted")
	}
}
