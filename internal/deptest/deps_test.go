// Package deptest enforces the direction of dependencies between Culex's
// packages (docs/architecture.md): the codec imports nothing of ours, the
// broker never imports the bridge, and so on.
package deptest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/culexmq/culex/"

// allowed lists, for each package, the packages of ours it may import.
// A package missing here may import nothing of ours.
var allowed = map[string][]string{
	"internal/testcert":    {},
	"internal/testlog":     {},
	"internal/brokertest":  {"internal/broker", "internal/listener"},
	"internal/mqtt/packet": {},
	"internal/cliflag":     {},
	"internal/config":      {"internal/atomicfile", "internal/cliflag"},
	"internal/dashboard":   {},
	"internal/store":       {},
	"internal/mqtt/topic":  {"internal/mqtt/packet"},
	"internal/listener":    {"internal/config"},
	"internal/netpoll":     {"internal/listener"},
	"internal/broker": {"internal/mqtt/packet", "internal/mqtt/topic", "internal/store",
		"internal/config", "internal/listener", "internal/netpoll"},
	"internal/bench":        {"internal/mqtt/packet", "internal/netpoll", "internal/cliflag"},
	"internal/bridge/kafka": {"internal/atomicfile", "internal/broker", "internal/config", "internal/mqtt/packet", "internal/mqtt/topic"},
	"internal/auth":         {"internal/broker", "internal/config", "internal/mqtt/packet", "internal/mqtt/topic"},
	"internal/health":       {},
	"internal/eventlog":     {"internal/broker", "internal/mqtt/packet"},
	"internal/metrics":      {"internal/auth", "internal/bridge/kafka", "internal/broker", "internal/listener", "internal/store"},
	"internal/server": {"internal/auth", "internal/bridge/kafka", "internal/broker", "internal/config", "internal/listener", "internal/store",
		"internal/mqtt/packet", "internal/mqtt/topic", "internal/admin", "internal/metrics", "internal/health", "internal/eventlog",
		"internal/cluster", "internal/cluster/fabric", "internal/cluster/registry", "internal/cluster/psession"},
	"internal/atomicfile":    {},
	"internal/admin/account": {"internal/atomicfile"},
	"internal/admin": {"internal/admin/account", "internal/atomicfile", "internal/auth", "internal/bridge/kafka", "internal/broker", "internal/config",
		"internal/mqtt/packet", "internal/mqtt/topic"},
	"internal/cluster/registry": {"internal/broker"},
	"internal/cluster/fabric":   {"internal/config"},
	"internal/cluster/subject":  {},
	"internal/cluster/psession": {"internal/broker", "internal/cluster/registry", "internal/cluster/subject", "internal/mqtt/topic"},
	"internal/cluster":          {"internal/broker", "internal/cluster/fabric", "internal/mqtt/packet", "internal/mqtt/topic", "internal/netpoll"},
	"internal/clustertest":      {},
	"internal/faultfs":          {},
}

// testOnly are the test-support packages: only test files import them.
var testOnly = []string{"internal/testcert", "internal/testlog", "internal/brokertest", "internal/clustertest", "internal/faultfs"}

type pkg struct {
	ImportPath string
	Imports    []string
}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-json", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			if dep := strings.TrimPrefix(imp, module); contains(testOnly, dep) {
				t.Errorf("%s imports %s, which is for tests only", name, dep)
			}
		}
		ok, listed := allowed[name]
		if !listed {
			continue // commands, tests and packages without a rule yet
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			if !contains(ok, dep) {
				t.Errorf("%s imports %s; allowed: %v (see docs/architecture.md)", name, dep, ok)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
