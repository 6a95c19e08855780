package auth

import (
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// naiveAllowed is the reference for Check: expand each rule's placeholders
// by string replacement (a value that may not be used drops an allow rule
// and makes a deny rule's level '+'), then topic.Match.
func naiveAllowed(a *ACL, id *Identity, action Action, name string) bool {
	if id.Superuser {
		return true
	}
	if a.sysSuperOnly && isSysTopic(name) {
		return false
	}
	it := a.rulesFor(id)
	for r := it.next(); r != nil; r = it.next() {
		if r.Action&action == 0 {
			continue
		}
		levels, ok := r.expand(id)
		if ok && !r.Allow && r.levels[0].hasPH && levels[0] == "+" {
			// A deny rule's unusable placeholder matches any level, '$' ones too.
			levels[0], _, _ = strings.Cut(name, "/")
		}
		if ok && topic.Match(strings.Join(levels, "/"), name) {
			return r.Allow
		}
	}
	return a.defaultAllow
}

// instances returns topic names that filter f matches, built by giving each
// wildcard a few values.
func instances(f string, extra []string) []string {
	out := []string{""}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		var choices []string
		switch l {
		case "+":
			choices = append([]string{"x", "secret", "telemetry", "commands", ""}, extra...)
		case "#":
			choices = append([]string{"", "x", "x/y", "secret", "state/a"}, extra...)
		default:
			choices = []string{l}
		}
		var next []string
		for _, p := range out {
			for _, c := range choices {
				switch {
				case l == "#" && c == "" && i == 0:
					continue
				case l == "#" && c == "":
					next = append(next, p) // '#' matches the parent level
				case i == 0:
					next = append(next, c)
				default:
					next = append(next, p+"/"+c)
				}
			}
		}
		if len(next) > 200 {
			next = next[:200]
		}
		out = next
	}
	return out
}

// FuzzACL checks, with adversarial client ids and usernames, that Check
// agrees with the naive expansion, that a rule never matches a topic whose
// level merely equals a wildcard-bearing name, and that CheckFilter allows
// a filter only if every topic it matches is allowed or denied by a rule
// (which the delivery check applies), never by the default alone.
func FuzzACL(f *testing.F) {
	for _, s := range [][3]string{
		{"alice", "devices/alice/commands", "devices/alice/+"},
		{"+", "devices/+/telemetry", "devices/+/telemetry"},
		{"#", "devices/#", "devices/#"},
		{"a/b", "devices/a/b/telemetry", "devices/a/+/telemetry"},
		{"$SYS", "$SYS/x", "$SYS/#"},
		{"", "devices//commands", "devices//#"},
		{"a\x00", "devices/a/state", "$share/g/devices/a/#"},
	} {
		f.Add(s[0], s[0], s[1], s[2])
	}
	rules, err := ParseACL(strings.NewReader(deviceACL + "all\nallow subscribe devices/${clientid}/#\ndeny publish ${username}/#\nallow both pub/${username}-${clientid}/+\n"))
	if err != nil {
		f.Fatal(err)
	}
	acls := []*ACL{NewACL(rules, false, true), NewACL(rules, true, false)}
	f.Fuzz(func(t *testing.T, user, client, name, filter string) {
		id := &Identity{Username: user, ClientID: client}
		for _, a := range acls {
			if topic.ValidName(name, 0) == nil {
				for _, act := range []Action{Publish, Subscribe} {
					got, want := a.Check(id, act, name), naiveAllowed(a, id, act, name)
					if got != want {
						t.Fatalf("Check(%q, %q, %v, %q) = %v, naive %v", user, client, act, name, got, want)
					}
				}
				if _, ok := value(id, phUsername); !ok && !a.defaultAllow && a.Check(id, Publish, name) &&
					strings.HasPrefix(name, "devices/") && !strings.HasPrefix(name, "devices/"+client+"/") {
					t.Fatalf("user %q client %q may publish %q", user, client, name)
				}
			}
			if topic.ValidFilter(filter, 0) != nil || !a.CheckFilter(id, filter) {
				continue
			}
			inner := filter
			if _, in, ok, _ := topic.ParseShared(filter); ok {
				inner = in
			}
			for _, n := range instances(inner, []string{user, client}) {
				if topic.ValidName(n, 0) == nil && topic.Match(inner, n) && !a.Check(id, Subscribe, n) &&
					!deniedByRule(a, id, n) {
					t.Fatalf("CheckFilter(%q/%q, %q) allowed, but the default denies %q", user, client, filter, n)
				}
			}
		}
	})
}

// deniedByRule reports whether the rule that decides receiving name is a
// deny rule (rather than no rule, leaving the default).
func deniedByRule(a *ACL, id *Identity, name string) bool {
	it := a.rulesFor(id)
	for r := it.next(); r != nil; r = it.next() {
		if r.Action&Subscribe != 0 && r.matchName(id, name) {
			return !r.Allow
		}
	}
	return false
}
