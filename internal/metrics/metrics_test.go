package metrics

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryMetricDocumented: docs/operations.md names every metric the
// Collector serves, and every culex_ name it mentions exists.
func TestEveryMetricDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	nameRE := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	served := map[string]bool{}
	for _, d := range slices.Concat(all, clusterDescs, sessionDescs) {
		m := nameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		served[m[1]] = true
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("docs/operations.md does not document %s", m[1])
		}
	}
	for _, m := range regexp.MustCompile("`(culex_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		if !served[m[1]] {
			t.Errorf("docs/operations.md names %s, which is not served", m[1])
		}
	}
}

// TestReasonLabel: MQTT reason strings become label values.
func TestReasonLabel(t *testing.T) {
	for in, want := range map[string]string{"quota exceeded": "quota_exceeded", "bad user name or password": "bad_user_name_or_password", "banned": "banned"} {
		if got := reasonLabel(in); got != want {
			t.Errorf("reasonLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGrafanaDashboardNames: every culex_ metric the example Grafana
// dashboard queries is served.
func TestGrafanaDashboardNames(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/culex.json")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, d := range all {
		served[regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]] = true
	}
	names := regexp.MustCompile(`culex_[a-z_]+`).FindAllString(string(data), -1)
	if len(names) < 20 {
		t.Fatalf("the dashboard queries %d culex_ metrics", len(names))
	}
	for _, n := range names {
		if base := strings.TrimSuffix(n, "_bucket"); !served[base] {
			t.Errorf("deploy/grafana/culex.json queries %s, which is not served", n)
		}
	}
}
