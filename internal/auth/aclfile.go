package auth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// ParseACL reads an ACL file (docs/security.md):
//
//	# comment
//	allow publish   devices/${username}/telemetry
//	allow subscribe devices/${username}/commands
//	deny  both      #
//	user alice          # the rules below apply to username alice
//	client gateway-1    # ... to client id gateway-1
//	all                 # ... to everyone again
//
// Mosquitto's keywords are accepted too: "topic [read|write|readwrite|deny]
// FILTER" (for the current user section, or anonymous clients before any)
// and "pattern [read|write|readwrite|deny] FILTER" (everyone), read in
// first-match order like every other rule.
func ParseACL(r io.Reader) ([]Rule, error) {
	var out []Rule
	scope := Scope{}
	topicScope := Scope{Kind: ScopeAnonymous}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		word, rest := cutSpace(line)
		var (
			rule Rule
			err  error
		)
		switch word {
		case "user", "client":
			if rest == "" {
				return nil, fmt.Errorf("acl line %d: %s needs a name", n, word)
			}
			scope = Scope{Kind: ScopeUser, Name: rest}
			if word == "client" {
				scope.Kind = ScopeClient
			}
			topicScope = scope
			continue
		case "all":
			scope, topicScope = Scope{}, Scope{}
			continue
		case "allow", "deny":
			act, filter := cutSpace(rest)
			var a Action
			if a, err = parseAction(act); err == nil {
				rule, err = NewRule(word == "allow", a, filter, scope)
			}
		case "topic", "pattern":
			sc := topicScope
			if word == "pattern" {
				sc = Scope{}
			}
			rule, err = mosquittoRule(rest, sc)
		default:
			err = fmt.Errorf("unknown keyword %q", word)
		}
		if err != nil {
			return nil, fmt.Errorf("acl line %d: %w", n, err)
		}
		out = append(out, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	return out, nil
}

// LoadACL reads the ACL file at path.
func LoadACL(path string) ([]Rule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rules, err := ParseACL(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

func mosquittoRule(rest string, scope Scope) (Rule, error) {
	access, filter := cutSpace(rest)
	allow, act := true, Both
	switch access {
	case "read":
		act = Subscribe
	case "write":
		act = Publish
	case "readwrite":
	case "deny":
		allow = false
	default:
		filter = rest // "topic FILTER" means readwrite
	}
	return NewRule(allow, act, filter, scope)
}

func parseAction(s string) (Action, error) {
	switch s {
	case "publish", "pub", "write":
		return Publish, nil
	case "subscribe", "sub", "read":
		return Subscribe, nil
	case "both", "all", "pubsub", "readwrite":
		return Both, nil
	}
	return 0, fmt.Errorf("action %q: want publish, subscribe or both", s)
}

func cutSpace(s string) (string, string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// jsonRule is a rule as carried by a JWT claim or a webhook answer:
// {"permission": "allow", "action": "publish", "topic": "devices/${username}/#"}.
type jsonRule struct {
	Permission string `json:"permission"`
	Action     string `json:"action"`
	Topic      string `json:"topic"`
}

// parseJSONRules compiles rules from a JWT claim or webhook answer; they
// apply to the one identity they came with.
func parseJSONRules(raw json.RawMessage) ([]Rule, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var in []jsonRule
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("acl rules: %w", err)
	}
	out := make([]Rule, 0, len(in))
	for _, j := range in {
		if j.Permission != "allow" && j.Permission != "deny" {
			return nil, fmt.Errorf("acl rule %q: permission %q: want allow or deny", j.Topic, j.Permission)
		}
		a, err := parseAction(j.Action)
		if err != nil {
			return nil, fmt.Errorf("acl rule %q: %w", j.Topic, err)
		}
		r, err := NewRule(j.Permission == "allow", a, j.Topic, Scope{})
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
