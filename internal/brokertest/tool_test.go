package brokertest

import (
	"fmt"
	"testing"
)

// stubTB records how Tool stopped a test, without stopping this one.
type stubTB struct {
	testing.TB
	fatal, skip string
}

func (s *stubTB) Helper()                      {}
func (s *stubTB) Fatalf(f string, args ...any) { s.fatal = fmt.Sprintf(f, args...) }
func (s *stubTB) Skipf(f string, args ...any)  { s.skip = fmt.Sprintf(f, args...) }

// TestToolFailsInCI: a missing kcat skips a test on a workstation and
// fails it in CI.
func TestToolFailsInCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		s := &stubTB{TB: t}
		if p := Tool(s, "kcat", "kcat"); p != "" {
			t.Fatalf("found kcat at %s on an empty PATH", p)
		}
		if failed := s.fatal != ""; failed != (ci == "true") || (s.skip != "") == failed {
			t.Errorf("CI=%q: fatal %q, skip %q", ci, s.fatal, s.skip)
		}
	}
}
