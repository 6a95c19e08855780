package auth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"sync/atomic"
	"time"
)

// Action is what a client does with a topic.
type Action uint8

// Actions. Receiving a message is checked as Subscribe.
const (
	Publish Action = 1 << iota
	Subscribe
	Both = Publish | Subscribe
)

func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	case Both:
		return "both"
	}
	return "none"
}

// Identity is who an authenticated client is, as the ACL sees it. Only
// authenticated values are used in placeholders: an anonymous client has an
// empty Username whatever its CONNECT said.
type Identity struct {
	ClientID string
	Username string
	// CertCN is the common name of a verified client certificate.
	CertCN    string
	Remote    net.Addr
	Superuser bool
	Anonymous bool
	// ACL holds rules from a JWT or webhook answer, checked before the file's.
	ACL []Rule
	// Backend names the backend that authenticated the client.
	Backend string
	// Expires is when the credential stops being valid (a JWT's exp, plus
	// the leeway); zero for none. A client still connected then is
	// disconnected (0xA0, maximum connect time).
	Expires time.Time
	// credential identifies the secret the client proved (the users-file
	// hash), so that a reload can tell whether it was revoked.
	credential string
	// revoked is set by a reload that removed or changed the credential:
	// every check of a revoked identity fails.
	revoked atomic.Bool
	// expiry disconnects the client at Expires (Adapter.OnConnect).
	expiry atomic.Pointer[time.Timer]
}

// savedIdentity is what Identity.state keeps of an identity: what the ACL
// needs to judge deliveries to its session while the client is away.
type savedIdentity struct {
	Username  string     `json:"u,omitempty"`
	CertCN    string     `json:"cn,omitempty"`
	Superuser bool       `json:"su,omitempty"`
	Anonymous bool       `json:"an,omitempty"`
	Backend   string     `json:"b,omitempty"`
	ACL       []jsonRule `json:"acl,omitempty"`
}

// state encodes id for broker.ClientInfo.AuthState.
func (id *Identity) state() []byte {
	s := savedIdentity{Username: id.Username, CertCN: id.CertCN, Superuser: id.Superuser,
		Anonymous: id.Anonymous, Backend: id.Backend}
	for _, r := range id.ACL {
		p := "deny"
		if r.Allow {
			p = "allow"
		}
		s.ACL = append(s.ACL, jsonRule{Permission: p, Action: r.Action.String(), Topic: r.Filter})
	}
	b, _ := json.Marshal(&s)
	return b
}

// Owner is the identity's name as the owner of the sessions it creates
// (broker.ClientInfo.Owner): the authenticated username, which is the
// certificate's name or the JWT's subject for those backends; empty for an
// anonymous client.
func (id *Identity) Owner() string {
	if id.Anonymous {
		return ""
	}
	return id.Username
}

// Revoked reports whether a reload revoked the identity's credentials.
func (id *Identity) Revoked() bool { return id.revoked.Load() }

// Request is one login attempt.
type Request struct {
	ClientID    string
	Username    string
	Password    []byte
	HasUsername bool
	HasPassword bool
	Remote      net.Addr
	TLS         *tls.ConnectionState
}

// offered reports whether the client presented credentials.
func (r *Request) offered() bool { return r.HasUsername || r.HasPassword }

// Verdict is a backend's answer.
type Verdict uint8

// Verdicts: Ignore passes the request to the next backend of the chain.
const (
	Ignore Verdict = iota
	Allow
	Deny
)

// Result is a backend's answer to a Request. On Allow, Username is the
// authenticated name (empty: the CONNECT username), and Superuser and ACL
// describe the client's rights beyond the ACL file.
type Result struct {
	Verdict   Verdict
	Username  string
	CertCN    string
	Superuser bool
	ACL       []Rule
	// Code is the reason for a Deny (a packet.Code); nil means bad user
	// name or password.
	Code       error
	Expires    time.Time // see Identity.Expires
	credential string
	// hashed reports that the backend checked the password against a
	// hash (so the chain owes no decoy for this login).
	hashed bool
}

// Authenticator is one backend of the chain. An error is a failure of the
// backend itself (not a wrong password); the chain denies on it.
type Authenticator interface {
	Name() string
	Authenticate(ctx context.Context, r *Request) (Result, error)
}
