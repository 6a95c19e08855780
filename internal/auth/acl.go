package auth

import (
	"fmt"
	"strings"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// Rule is one ACL line: allow or deny an action on the topics a filter
// matches. The filter may hold placeholders, each standing for a whole
// value compared literally: ${username} (or %u), ${clientid} (or %c) and
// ${cert_cn}.
type Rule struct {
	Allow  bool
	Action Action
	Filter string
	// Scope limits the rule to some clients; the zero value is everyone.
	Scope Scope

	levels []level
}

// ScopeKind says which clients a rule applies to.
type ScopeKind uint8

// Scope kinds.
const (
	ScopeAll       ScopeKind = iota
	ScopeUser                // Scope.Name is the username
	ScopeClient              // Scope.Name is the client id
	ScopeAnonymous           // clients without an authenticated username
)

// Scope limits a rule to some clients.
type Scope struct {
	Kind ScopeKind
	Name string
}

func (s Scope) applies(id *Identity) bool {
	switch s.Kind {
	case ScopeUser:
		return !id.Anonymous && id.Username == s.Name
	case ScopeClient:
		return id.ClientID == s.Name
	case ScopeAnonymous:
		return id.Anonymous
	}
	return true
}

type placeholder uint8

const (
	phNone placeholder = iota
	phUsername
	phClientID
	phCertCN
)

// part is a literal or a placeholder within a level.
type part struct {
	lit string
	ph  placeholder
}

// level is one level of a rule's filter: a wildcard or a sequence of parts.
type level struct {
	wild  byte // '+', '#' or 0
	parts []part
	hasPH bool
}

// NewRule compiles a rule, checking its filter and placeholders.
func NewRule(allow bool, action Action, filter string, scope Scope) (Rule, error) {
	r := Rule{Allow: allow, Action: action, Filter: filter, Scope: scope}
	if action == 0 || action > Both {
		return r, fmt.Errorf("acl rule %q: no action", filter)
	}
	probe := strings.Builder{}
	for i, s := range strings.Split(filter, "/") {
		if i > 0 {
			probe.WriteByte('/')
		}
		lv, err := parseLevel(s)
		if err != nil {
			return r, fmt.Errorf("acl rule %q: %w", filter, err)
		}
		r.levels = append(r.levels, lv)
		if lv.wild != 0 {
			probe.WriteByte(lv.wild)
			continue
		}
		for _, p := range lv.parts {
			if p.ph != phNone {
				probe.WriteByte('x')
			}
			probe.WriteString(p.lit)
		}
	}
	if strings.HasPrefix(filter, "$share/") {
		return r, fmt.Errorf("acl rule %q: rules name the inner filter, not $share/", filter)
	}
	if err := topic.ValidFilter(probe.String(), 0); err != nil {
		return r, fmt.Errorf("acl rule %q: %w", filter, err)
	}
	return r, nil
}

func parseLevel(s string) (level, error) {
	if s == "+" || s == "#" {
		return level{wild: s[0]}, nil
	}
	var lv level
	lit := strings.Builder{}
	flush := func() {
		if lit.Len() > 0 {
			lv.parts = append(lv.parts, part{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		ph, n := phNone, 0
		switch {
		case strings.HasPrefix(s[i:], "${username}"):
			ph, n = phUsername, len("${username}")
		case strings.HasPrefix(s[i:], "${clientid}"):
			ph, n = phClientID, len("${clientid}")
		case strings.HasPrefix(s[i:], "${cert_cn}"):
			ph, n = phCertCN, len("${cert_cn}")
		case strings.HasPrefix(s[i:], "%u"):
			ph, n = phUsername, 2
		case strings.HasPrefix(s[i:], "%c"):
			ph, n = phClientID, 2
		case strings.HasPrefix(s[i:], "${"):
			return lv, fmt.Errorf("unknown placeholder in %q", s)
		}
		if ph == phNone {
			lit.WriteByte(s[i])
			continue
		}
		flush()
		lv.parts = append(lv.parts, part{ph: ph})
		lv.hasPH = true
		i += n - 1
	}
	flush()
	return lv, nil
}

// value returns a placeholder's value for id and whether it may stand in a
// rule: a value that is empty, holds a wildcard, a level separator or NUL,
// or starts with '$' could widen the rule, so it never does.
func value(id *Identity, ph placeholder) (string, bool) {
	var v string
	switch ph {
	case phUsername:
		if id.Anonymous {
			return "", false
		}
		v = id.Username
	case phClientID:
		v = id.ClientID
	case phCertCN:
		v = id.CertCN
	}
	if v == "" || v[0] == '$' || strings.ContainsAny(v, "+#/\x00") {
		return "", false
	}
	return v, true
}

// matchSeg compares one topic level with a literal level. bad reports a
// placeholder whose value may not be used.
func (lv *level) matchSeg(id *Identity, seg string) (ok, bad bool) {
	if lv.hasPH {
		for _, p := range lv.parts {
			if p.ph != phNone {
				if _, good := value(id, p.ph); !good {
					return false, true
				}
			}
		}
	}
	for _, p := range lv.parts {
		s := p.lit
		if p.ph != phNone {
			s, _ = value(id, p.ph)
		}
		if !strings.HasPrefix(seg, s) {
			return false, false
		}
		seg = seg[len(s):]
	}
	return seg == "", false
}

// matchName reports whether the rule's filter matches a topic name. A
// placeholder that may not be used makes an allow rule match nothing and a
// deny rule's level match anything: both err towards denying.
func (r *Rule) matchName(id *Identity, name string) bool {
	if len(r.levels) == 0 {
		return false
	}
	if topic.IsSys(name) && r.levels[0].wild != 0 {
		return false // [MQTT-4.7.2-1]
	}
	rest, done := name, false
	for i := range r.levels {
		lv := &r.levels[i]
		if lv.wild == '#' {
			return true // [MQTT-4.7.1-2]: also matches the parent level
		}
		if done {
			return false
		}
		seg, after, more := strings.Cut(rest, "/")
		if lv.wild == 0 {
			ok, bad := lv.matchSeg(id, seg)
			if bad && r.Allow || !bad && !ok {
				return false
			}
		}
		rest, done = after, !more
	}
	return done
}

// expand returns the rule's filter levels for id, with placeholders
// replaced; ok is false when the rule cannot apply to id. A placeholder
// that may not be used turns a deny rule's level into '+'.
func (r *Rule) expand(id *Identity) (levels []string, ok bool) {
	levels = make([]string, len(r.levels))
	for i := range r.levels {
		lv := &r.levels[i]
		if lv.wild != 0 {
			levels[i] = string(lv.wild)
			continue
		}
		var b strings.Builder
		for _, p := range lv.parts {
			if p.ph == phNone {
				b.WriteString(p.lit)
				continue
			}
			v, good := value(id, p.ph)
			if !good {
				if r.Allow {
					return nil, false
				}
				b.Reset()
				b.WriteByte('+')
				break
			}
			b.WriteString(v)
		}
		levels[i] = b.String()
	}
	return levels, true
}

func isWild(s string) bool { return s == "+" || s == "#" }

// sysMismatch reports whether one filter starts with a wildcard and the
// other with a '$' level: they share no topic [MQTT-4.7.2-1].
func sysMismatch(a, b []string) bool {
	return len(a) > 0 && len(b) > 0 && isWild(a[0]) && !isWild(b[0]) && strings.HasPrefix(b[0], "$")
}

// subset reports whether every topic filter f matches is matched by r.
func subset(f, r []string) bool {
	if sysMismatch(r, f) {
		return false
	}
	for i := 0; ; i++ {
		switch {
		case i == len(r):
			return i == len(f)
		case r[i] == "#":
			return true
		case i == len(f), f[i] == "#":
			return false
		case r[i] == "+":
		case f[i] != r[i]:
			return false // a '+' in f is wider than r's literal
		}
	}
}

// intersect reports whether some topic is matched by both f and r.
func intersect(f, r []string) bool {
	if sysMismatch(f, r) || sysMismatch(r, f) {
		return false
	}
	for i := 0; ; i++ {
		switch {
		case i < len(f) && f[i] == "#", i < len(r) && r[i] == "#":
			return true
		case i == len(f) || i == len(r):
			return i == len(f) && i == len(r)
		case f[i] == "+" || r[i] == "+":
		case f[i] != r[i]:
			return false
		}
	}
}

// UsesClientID reports whether a rule trusts the client id: a ${clientid}
// (%c) placeholder or a `client NAME` section. Such rules grant rights to
// whoever presents the id unless auth.client_id_binding ties ids to
// identities (docs/security.md, "Ownership of client ids and sessions").
func (a *ACL) UsesClientID() bool {
	for _, r := range a.rules {
		if r.Scope.Kind == ScopeClient {
			return true
		}
		for _, lv := range r.levels {
			for _, p := range lv.parts {
				if p.ph == phClientID {
					return true
				}
			}
		}
	}
	return false
}
