package auth

import (
	"os"
	"strings"
	"testing"
)

func mustRules(t testing.TB, text string) []Rule {
	t.Helper()
	rules, err := ParseACL(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// deviceACL is the scenario: a device may use only its own subtree.
const deviceACL = `
# devices publish telemetry and read commands under their own id
allow publish   devices/${username}/telemetry
allow subscribe devices/${username}/commands
allow both      devices/%u/state/#
deny  both      devices/+/secret
allow subscribe fleet/+/status
user ops
allow subscribe devices/#
client logger-%c
allow subscribe logs/#
`

func dev(name string) *Identity { return &Identity{ClientID: name, Username: name} }

func TestACLCheck(t *testing.T) {
	acl := NewACL(mustRules(t, deviceACL), false, true)
	tests := []struct {
		id     *Identity
		action Action
		topic  string
		want   bool
	}{
		{dev("a"), Publish, "devices/a/telemetry", true},
		{dev("a"), Subscribe, "devices/a/telemetry", false},
		{dev("a"), Publish, "devices/b/telemetry", false},
		{dev("a"), Subscribe, "devices/a/commands", true},
		{dev("a"), Publish, "devices/a/commands", false},
		{dev("a"), Subscribe, "devices/b/commands", false},
		{dev("a"), Publish, "devices/a/state", true}, // '#' matches the parent
		{dev("a"), Publish, "devices/a/state/x/y", true},
		{dev("a"), Publish, "devices/ab/state", false},
		{dev("a"), Publish, "devices/a", false},
		{dev("a"), Subscribe, "fleet/x/status", true},
		{dev("ops"), Subscribe, "devices/b/telemetry", true},
		{dev("ops"), Publish, "devices/b/telemetry", false},
		{dev("ops"), Subscribe, "devices/b/secret", false}, // the earlier deny wins
		{dev("a"), Subscribe, "$SYS/broker/uptime", false},
		{&Identity{Username: "root", Superuser: true}, Subscribe, "$SYS/broker/uptime", true},
		{&Identity{Username: "root", Superuser: true}, Publish, "devices/b/telemetry", true},
		// Anonymous clients have no username to stand in ${username}.
		{&Identity{Anonymous: true, ClientID: "a"}, Publish, "devices//telemetry", false},
		// Adversarial names never widen a rule.
		{dev("+"), Publish, "devices/+/telemetry", false},
		{dev("#"), Publish, "devices/#/telemetry", false},
		{dev("a/b"), Publish, "devices/a/b/telemetry", false},
		{dev("$SYS"), Publish, "devices/$SYS/telemetry", false},
		{dev(""), Publish, "devices//telemetry", false},
	}
	for _, tt := range tests {
		if got := acl.Check(tt.id, tt.action, tt.topic); got != tt.want {
			t.Errorf("Check(%q, %v, %q) = %v, want %v", tt.id.Username, tt.action, tt.topic, got, tt.want)
		}
	}
}

func TestACLCheckFilter(t *testing.T) {
	acl := NewACL(mustRules(t, deviceACL+"all\nallow subscribe devices/${username}/#\n"), false, true)
	tests := []struct {
		id     *Identity
		filter string
		want   bool
	}{
		{dev("alice"), "devices/alice/commands", true},
		// devices/alice/secret is denied per message, not the subscription.
		{dev("alice"), "devices/alice/+", true},
		{dev("alice"), "devices/alice/secret", false}, // the deny covers it all
		{dev("alice"), "devices/alice/state/#", true},
		{dev("alice"), "devices/alice/state/+/x", true},
		{dev("alice"), "devices/+/commands", false},
		{dev("alice"), "devices/+/telemetry", false},
		{dev("alice"), "devices/#", false},
		{dev("alice"), "#", false},
		{dev("alice"), "+/alice/commands", false},
		{dev("alice"), "$share/g/devices/alice/commands", true},
		{dev("alice"), "$share/g/devices/+/commands", false},
		{dev("alice"), "$share/g/devices/bob/commands", false},
		{dev("alice"), "$share/+/x", false},
		{dev("alice"), "fleet/+/status", true},
		{dev("alice"), "fleet/#", false},
		{dev("alice"), "$SYS/#", false},
		{dev("ops"), "devices/+/telemetry", true},
		{dev("ops"), "devices/#", true}, // its secrets are left out at delivery
		{dev("ops"), "#", false},
		{dev("ops"), "devices/+/secret", false},
		{dev("+"), "devices/+/commands", false},
		{dev("#"), "devices/#", false},
		{&Identity{Superuser: true}, "$SYS/#", true},
	}
	for _, tt := range tests {
		if got := acl.CheckFilter(tt.id, tt.filter); got != tt.want {
			t.Errorf("CheckFilter(%q, %q) = %v, want %v", tt.id.Username, tt.filter, got, tt.want)
		}
	}
}

func TestACLIssueExample(t *testing.T) {
	acl := NewACL(mustRules(t, "allow both devices/${username}/#\n"), false, true)
	if !acl.CheckFilter(dev("alice"), "devices/alice/+") {
		t.Error("devices/alice/+ denied")
	}
	if acl.CheckFilter(dev("alice"), "devices/+/telemetry") {
		t.Error("devices/+/telemetry allowed")
	}
	open := NewACL(mustRules(t, "deny subscribe devices/+/secret\n"), true, true)
	if !open.CheckFilter(dev("a"), "devices/#") || !open.CheckFilter(dev("a"), "#") ||
		!open.CheckFilter(dev("a"), "devices/a/x") || open.CheckFilter(dev("a"), "devices/a/secret") {
		t.Error("default allow with a narrower deny rule")
	}
	if open.Check(dev("a"), Subscribe, "devices/b/secret") || !open.Check(dev("a"), Subscribe, "devices/b/temp") {
		t.Error("delivery check with a narrower deny rule")
	}
	if open.Check(dev("a"), Subscribe, "$SYS/x") {
		t.Error("$SYS allowed to a non-superuser")
	}
	sys := NewACL(nil, true, false)
	if !sys.Check(dev("a"), Subscribe, "$SYS/x") {
		t.Error("$SYS denied with sys_superuser_only off and default allow")
	}
}

func TestDenyRuleWithBadPlaceholderDenies(t *testing.T) {
	acl := NewACL(mustRules(t, "deny publish devices/${username}/config\nallow publish devices/#\n"), false, true)
	if acl.Check(dev("+"), Publish, "devices/x/config") {
		t.Error("a wildcard username escaped its deny rule")
	}
	if !acl.Check(dev("a"), Publish, "devices/x/config") {
		t.Error("a normal username was denied another device's config")
	}
	if acl.CheckFilter(dev("#"), "devices/x/config") {
		t.Error("filter: a wildcard username escaped its deny rule")
	}
}

func TestSubsetIntersect(t *testing.T) {
	tests := []struct {
		f, r        string
		sub, inters bool
	}{
		{"a/b", "a/b", true, true},
		{"a/b", "a/+", true, true},
		{"a/+", "a/b", false, true},
		{"a", "a/#", true, true},
		{"a/#", "a", false, true},
		{"a/#", "a/#", true, true},
		{"a/+/c", "a/#", true, true},
		{"#", "a/#", false, true},
		{"a/b", "c/#", false, false},
		{"a/+", "a/+/+", false, false},
		{"$SYS/x", "#", false, false},
		{"$SYS/x", "+/x", false, false},
		{"#", "$SYS/#", false, false},
		{"+/+", "#", true, true},
		{"a/b/c", "a/+", false, false},
	}
	for _, tt := range tests {
		f, r := strings.Split(tt.f, "/"), strings.Split(tt.r, "/")
		if got := subset(f, r); got != tt.sub {
			t.Errorf("subset(%q, %q) = %v", tt.f, tt.r, got)
		}
		if got := intersect(f, r); got != tt.inters {
			t.Errorf("intersect(%q, %q) = %v", tt.f, tt.r, got)
		}
		if got := intersect(r, f); got != tt.inters {
			t.Errorf("intersect(%q, %q) = %v", tt.r, tt.f, got)
		}
	}
}

func TestParseACLErrors(t *testing.T) {
	for _, text := range []string{
		"allow publish a/#/b\n",
		"allow jump a\n",
		"allow publish ${nope}/x\n",
		"frobnicate a\n",
		"user\n",
		"allow publish a+b\n",
		"allow subscribe $share/g/a\n",
	} {
		if _, err := ParseACL(strings.NewReader(text)); err == nil {
			t.Errorf("ParseACL(%q) succeeded", text)
		}
	}
}

func TestParseACLMosquitto(t *testing.T) {
	acl := NewACL(mustRules(t, "topic read public/#\nuser bob\ntopic write bob/x\ntopic deny bob/y\npattern readwrite dev/%u/%c\n"), false, true)
	if !acl.Check(&Identity{Anonymous: true}, Subscribe, "public/a") {
		t.Error("anonymous topic read")
	}
	if acl.Check(dev("bob"), Subscribe, "public/a") {
		t.Error("bob got the anonymous rule")
	}
	if !acl.Check(dev("bob"), Publish, "bob/x") || acl.Check(dev("bob"), Publish, "bob/y") {
		t.Error("bob's rules")
	}
	if !acl.Check(&Identity{Username: "u", ClientID: "c"}, Subscribe, "dev/u/c") {
		t.Error("pattern")
	}
}

func TestACLCheckAllocs(t *testing.T) {
	acl := NewACL(mustRules(t, deviceACL), false, true)
	id := dev("device-42")
	allocs := testing.AllocsPerRun(100, func() {
		acl.Check(id, Subscribe, "devices/device-42/commands")
		acl.Check(id, Publish, "devices/device-41/telemetry")
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times", allocs)
	}
}

func BenchmarkACLCheck(b *testing.B) {
	acl := NewACL(mustRules(b, deviceACL), false, true)
	id := dev("device-42")
	b.ReportAllocs()
	for b.Loop() {
		acl.Check(id, Subscribe, "devices/device-42/commands")
	}
}

// TestDocsACLExample keeps the ACL example of docs/security.md valid.
func TestDocsACLExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Skip(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```text\n# Comments take whole lines.\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("ACL example not found in docs/security.md")
	}
	acl := NewACL(mustRules(t, block), false, true)
	if !acl.Check(dev("gateway-1"), Publish, "gateways/x") || acl.Check(dev("ops"), Subscribe, "devices/a/secret") ||
		!acl.Check(dev("ops"), Subscribe, "devices/a/telemetry") || !acl.Check(dev("a"), Subscribe, "fleet/x/status") {
		t.Error("the documented example does not do what the page says")
	}
}

// TestDocsSubscriptionTable runs the table of docs/security.md ("ACL",
// Subscriptions): the answer at subscribe and which topics are delivered.
func TestDocsSubscriptionTable(t *testing.T) {
	rows := []struct {
		filter, rules string
		defaultAllow  bool
		granted       bool
		delivered     []string
		withheld      []string
	}{
		{"devices/#", "deny subscribe devices/+/secret", true, true,
			[]string{"devices/a/temp", "devices/a/b/c"}, []string{"devices/a/secret"}},
		{"#", "deny subscribe devices/+/secret", true, true, []string{"x", "devices/a/temp"}, []string{"devices/b/secret", "$SYS/x"}},
		{"devices/a/secret", "deny subscribe devices/+/secret", true, false, nil, nil},
		{"devices/#", "deny subscribe devices/+/secret\nallow subscribe devices/#", false, true,
			[]string{"devices/a/temp"}, []string{"devices/a/secret"}},
		{"devices/+/secret", "deny subscribe devices/+/secret\nallow subscribe devices/#", false, false, nil, nil},
		{"devices/#", "allow subscribe devices/+/temp", false, false, nil, nil},
		{"devices/+/temp", "allow subscribe devices/+/temp", false, true, []string{"devices/a/temp"}, nil},
		{"devices/#", "allow subscribe devices/#\ndeny subscribe #", false, true, []string{"devices/a/secret"}, nil},
		{"#", "allow subscribe devices/#\ndeny subscribe #", false, false, nil, nil},
		{"devices/alice/+", "allow both devices/${username}/#", false, true, []string{"devices/alice/x"}, nil},
		{"devices/+/telemetry", "allow both devices/${username}/#", false, false, nil, nil},
	}
	alice := dev("alice")
	for _, r := range rows {
		acl := NewACL(mustRules(t, r.rules+"\n"), r.defaultAllow, true)
		if got := acl.CheckFilter(alice, r.filter); got != r.granted {
			t.Errorf("%q with %q: granted %v, want %v", r.filter, r.rules, got, r.granted)
		}
		for _, tp := range r.delivered {
			if !acl.Check(alice, Subscribe, tp) {
				t.Errorf("%q with %q: %s withheld, want delivered", r.filter, r.rules, tp)
			}
		}
		for _, tp := range r.withheld {
			if acl.Check(alice, Subscribe, tp) {
				t.Errorf("%q with %q: %s delivered, want withheld", r.filter, r.rules, tp)
			}
		}
	}
}
