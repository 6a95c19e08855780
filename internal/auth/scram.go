package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// SCRAMMethod is the MQTT 5 Authentication Method of the built-in
// enhanced authentication [MQTT-4.12], SCRAM-SHA-256 (RFC 5802, RFC 7677).
const SCRAMMethod = "SCRAM-SHA-256"

// SCRAMIterations is the PBKDF2 iteration count of new credentials
// (RFC 7677 asks for at least 4096).
const SCRAMIterations = 4096

// scramIterations is what new credentials use; tests lower it.
var scramIterations = SCRAMIterations

var b64 = base64.StdEncoding

// scramCreds are the stored SCRAM credentials of a user (RFC 5803 form:
// SCRAM-SHA-256$iter:salt$StoredKey:ServerKey, base64).
type scramCreds struct {
	iter       int
	salt       []byte
	storedKey  []byte
	serverKey  []byte
	serialized string
}

// NewSCRAMCreds derives the stored form of a password for SCRAM-SHA-256.
func NewSCRAMCreds(password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	stored := sha256.Sum256(hmacSHA256(salted, "Client Key"))
	server := hmacSHA256(salted, "Server Key")
	return fmt.Sprintf("%s$%d:%s$%s:%s", SCRAMMethod, scramIterations, b64.EncodeToString(salt),
		b64.EncodeToString(stored[:]), b64.EncodeToString(server)), nil
}

func parseSCRAMCreds(s string) (*scramCreds, error) {
	f := strings.Split(s, "$")
	if len(f) != 3 || f[0] != SCRAMMethod {
		return nil, errors.New("scram credentials: want SCRAM-SHA-256$iter:salt$stored:server")
	}
	it, salt, ok1 := strings.Cut(f[1], ":")
	st, sv, ok2 := strings.Cut(f[2], ":")
	n, err := strconv.Atoi(it)
	if !ok1 || !ok2 || err != nil || n < 1 || n > 1<<20 {
		return nil, errors.New("scram credentials: bad iteration count or form")
	}
	c := &scramCreds{iter: n, serialized: s}
	var e1, e2, e3 error
	c.salt, e1 = b64.DecodeString(salt)
	c.storedKey, e2 = b64.DecodeString(st)
	c.serverKey, e3 = b64.DecodeString(sv)
	if err := errors.Join(e1, e2, e3); err != nil || len(c.storedKey) != sha256.Size || len(c.serverKey) != sha256.Size {
		return nil, fmt.Errorf("scram credentials: bad base64 or key size: %v", err)
	}
	return c, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// SCRAMServer is the server side of one SCRAM-SHA-256 exchange: Step is
// called with the client-first message, then the client-final message.
// Channel binding is not supported (gs2 header "n" or "y" only). An unknown
// user gets a made-up salt and fails only at the proof, so that the
// exchange does not tell which users exist.
type SCRAMServer struct {
	lookup func(user string) (*User, bool)
	fake   []byte // key for made-up salts

	state       int // 0: expect client-first, 1: expect client-final, 2: over
	ok          bool
	user        *User
	creds       *scramCreds
	name        string
	gs2, nonce  string
	firstBare   string
	serverFirst string
}

// NewSCRAMServer returns an exchange looking users up with lookup. fakeKey
// derives the salts made up for unknown users.
func NewSCRAMServer(lookup func(string) (*User, bool), fakeKey []byte) *SCRAMServer {
	return &SCRAMServer{lookup: lookup, fake: fakeKey}
}

var errSCRAM = fmt.Errorf("%w: scram", packet.ErrNotAuthorized)

// Step consumes one client message and returns the server's answer; done
// is true once the client is authenticated. Any error ends the exchange.
func (s *SCRAMServer) Step(msg []byte) (resp []byte, done bool, err error) {
	switch s.state {
	case 0:
		resp, err = s.first(string(msg))
	case 1:
		resp, err = s.final(string(msg))
		done = err == nil
		s.ok = done
	default:
		err = fmt.Errorf("%w: exchange already finished", errSCRAM)
	}
	if err != nil {
		s.state = 2
		return nil, false, err
	}
	s.state++
	return resp, done, nil
}

// User returns the authenticated user once Step reported done.
func (s *SCRAMServer) User() *User {
	if !s.ok {
		return nil
	}
	return s.user
}

func (s *SCRAMServer) first(msg string) ([]byte, error) {
	// gs2-header = cbind-flag "," [authzid] ","
	flag, rest, ok := strings.Cut(msg, ",")
	authz, bare, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 || (flag != "n" && flag != "y") || authz != "" {
		return nil, fmt.Errorf("%w: channel binding and authzid are not supported", errSCRAM)
	}
	s.gs2 = flag + ",,"
	s.firstBare = bare
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") || len(attrs[1]) < 3 {
		return nil, fmt.Errorf("%w: bad client-first message", errSCRAM)
	}
	name, err := saslName(attrs[0][2:])
	if err != nil {
		return nil, err
	}
	s.name = name
	var snonce [18]byte
	rand.Read(snonce[:])
	s.nonce = attrs[1][2:] + base64.RawURLEncoding.EncodeToString(snonce[:])
	if u, ok := s.lookup(name); ok && u.SCRAM != "" {
		if c, err := parseSCRAMCreds(u.SCRAM); err == nil {
			s.user, s.creds = u, c
		}
	}
	salt, iter := []byte(nil), scramIterations
	if s.creds != nil {
		salt, iter = s.creds.salt, s.creds.iter
	} else {
		salt = hmacSHA256(s.fake, name)[:16]
	}
	s.serverFirst = "r=" + s.nonce + ",s=" + b64.EncodeToString(salt) + ",i=" + strconv.Itoa(iter)
	return []byte(s.serverFirst), nil
}

func (s *SCRAMServer) final(msg string) ([]byte, error) {
	withoutProof, proof64, ok := strings.Cut(msg, ",p=")
	attrs := strings.Split(withoutProof, ",")
	if !ok || len(attrs) < 2 || attrs[0] != "c="+b64.EncodeToString([]byte(s.gs2)) || attrs[1] != "r="+s.nonce {
		return nil, fmt.Errorf("%w: bad client-final message", errSCRAM)
	}
	proof, err := b64.DecodeString(proof64)
	if err != nil || len(proof) != sha256.Size || s.creds == nil {
		return nil, errSCRAM
	}
	authMsg := s.firstBare + "," + s.serverFirst + "," + withoutProof
	sig := hmacSHA256(s.creds.storedKey, authMsg)
	clientKey := make([]byte, sha256.Size)
	for i := range clientKey {
		clientKey[i] = proof[i] ^ sig[i]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.creds.storedKey) != 1 {
		return nil, errSCRAM
	}
	return []byte("v=" + b64.EncodeToString(hmacSHA256(s.creds.serverKey, authMsg))), nil
}

// saslName decodes a SCRAM user name: "=2C" is ',' and "=3D" is '='.
func saslName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", fmt.Errorf("%w: bad user name encoding", errSCRAM)
		}
		i += 2
	}
	return b.String(), nil
}
