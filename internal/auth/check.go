package auth

import (
	"strings"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// ACL decides what an Identity may do with a topic. Rules are tried in
// order, the identity's own (from a JWT or webhook) first; the first rule
// that matches the action and topic decides. An ACL is immutable: a reload
// builds a new one.
type ACL struct {
	rules        []Rule
	defaultAllow bool
	sysSuperOnly bool

	// Indexes into rules, ascending, by scope.
	global   []int
	anon     []int
	byUser   map[string][]int
	byClient map[string][]int
}

// NewACL returns an ACL over compiled rules (see NewRule and ParseACL).
// defaultAllow answers when no rule matches; sysSuperuserOnly keeps $SYS
// topics for superusers whatever the rules say.
func NewACL(rules []Rule, defaultAllow, sysSuperuserOnly bool) *ACL {
	a := &ACL{rules: rules, defaultAllow: defaultAllow, sysSuperOnly: sysSuperuserOnly,
		byUser: map[string][]int{}, byClient: map[string][]int{}}
	for i, r := range rules {
		switch r.Scope.Kind {
		case ScopeAll:
			a.global = append(a.global, i)
		case ScopeAnonymous:
			a.anon = append(a.anon, i)
		case ScopeUser:
			a.byUser[r.Scope.Name] = append(a.byUser[r.Scope.Name], i)
		case ScopeClient:
			a.byClient[r.Scope.Name] = append(a.byClient[r.Scope.Name], i)
		}
	}
	return a
}

// Len is the number of rules of the file.
func (a *ACL) Len() int { return len(a.rules) }

// rules iterates over the identity's own rules, then the file's rules that
// apply to it in file order, without allocating.
type rules struct {
	a     *ACL
	id    *Identity
	own   int
	lists [3][]int
}

func (a *ACL) rulesFor(id *Identity) rules {
	scoped := a.byUser[id.Username]
	if id.Anonymous {
		scoped = a.anon
	}
	return rules{a: a, id: id, lists: [3][]int{a.global, scoped, a.byClient[id.ClientID]}}
}

func (it *rules) next() *Rule {
	if it.own < len(it.id.ACL) {
		it.own++
		return &it.id.ACL[it.own-1]
	}
	for {
		best, bi := -1, -1
		for li, l := range it.lists {
			if len(l) > 0 && (best < 0 || l[0] < best) {
				best, bi = l[0], li
			}
		}
		if bi < 0 {
			return nil
		}
		it.lists[bi] = it.lists[bi][1:]
		if r := &it.a.rules[best]; r.Scope.applies(it.id) {
			return r
		}
	}
}

func isSysTopic(first string) bool {
	return first == "$SYS" || strings.HasPrefix(first, "$SYS/")
}

// Check reports whether id may perform action (Publish or Subscribe, the
// latter also for receiving) on the topic name. It allocates nothing: it
// runs for every delivery.
func (a *ACL) Check(id *Identity, action Action, name string) bool {
	if id.Superuser {
		return true
	}
	if a.sysSuperOnly && isSysTopic(name) {
		return false
	}
	it := a.rulesFor(id)
	for r := it.next(); r != nil; r = it.next() {
		if r.Action&action != 0 && r.matchName(id, name) {
			return r.Allow
		}
	}
	return a.defaultAllow
}

// CheckFilter reports whether id may subscribe to filter. The first rule,
// in Check's order, that decides the filter as a whole decides: an allow
// rule that covers every topic the filter can match grants it, and a deny
// rule that covers every such topic refuses it. Rules that cover only part
// of the filter are passed over: an allow rule's part does not grant the
// rest, and a deny rule's part is applied per message at delivery, where
// CanReceive runs Check on each topic (so `deny subscribe devices/+/secret`
// leaves devices/# grantable, without its secrets). With no deciding rule,
// the default answers. A shared subscription is checked by its inner
// filter.
func (a *ACL) CheckFilter(id *Identity, filter string) bool {
	if _, inner, shared, err := topic.ParseShared(filter); shared {
		if err != nil {
			return false
		}
		filter = inner
	}
	if id.Superuser {
		return true
	}
	f := strings.Split(filter, "/")
	if a.sysSuperOnly && f[0] == "$SYS" {
		return false
	}
	it := a.rulesFor(id)
	for r := it.next(); r != nil; r = it.next() {
		if r.Action&Subscribe == 0 {
			continue
		}
		if rl, ok := r.expand(id); ok && subset(f, rl) {
			return r.Allow
		}
	}
	return a.defaultAllow
}
