package cliflag

import (
	"flag"
	"strings"
	"testing"
)

func TestDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"max_conections", "max_connections", 1}} {
		if d := distance(tc.a, tc.b); d != tc.d {
			t.Errorf("distance(%q,%q)=%d want %d", tc.a, tc.b, d, tc.d)
		}
	}
}

// TestParse: -h writes the usage and returns flag.ErrHelp; a misspelt
// flag is one line naming the closest; a bad value is flag's own line;
// nothing else is written.
func TestParse(t *testing.T) {
	newFS := func() *flag.FlagSet {
		fs := flag.NewFlagSet("culex x", flag.ContinueOnError)
		fs.Int("clients", 1, "number of clients")
		fs.String("url", "", "broker URL")
		return fs
	}
	var out strings.Builder
	if err := Parse(newFS(), []string{"-h"}, &out, nil); err != flag.ErrHelp || !strings.Contains(out.String(), "Usage of culex x:") || !strings.Contains(out.String(), "-clients int") {
		t.Errorf("-h: %v, %q", err, out.String())
	}
	out.Reset()
	err := Parse(newFS(), []string{"--client", "3"}, &out, nil)
	if err == nil || err.Error() != "unknown flag --client (did you mean --clients?); -h lists the flags" || out.Len() > 0 {
		t.Errorf("--client: %v, wrote %q", err, out.String())
	}
	if err := Parse(newFS(), []string{"--zzzzzz"}, &out, nil); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("--zzzzzz: %v", err)
	}
	if err := Parse(newFS(), []string{"--clients", "many"}, &out, nil); err == nil || strings.Count(err.Error(), "\n") > 0 || out.Len() > 0 {
		t.Errorf("bad value: %v, wrote %q", err, out.String())
	}
}
