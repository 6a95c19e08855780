package subject

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/nats-io/nats-server/v2/server"
)

func TestExamples(t *testing.T) {
	for _, tc := range []struct{ topic, subj string }{
		{"a/b", "a.b"},
		{"a.b/c d", "a~2Eb.c~20d"},
		{"/", "~.~"},
		{"a//b", "a.~.b"},
		{"$SYS/x", "$SYS.x"},
		{"~", "~7E"},
		{"*/>", "~2A.~3E"},
		{"héllo/wörld", "héllo.wörld"},
		{"tab\there", "tab~09here"},
	} {
		if got := Topic(tc.topic); got != tc.subj {
			t.Errorf("Topic(%q) = %q, want %q", tc.topic, got, tc.subj)
		}
		if back, err := Decode(tc.subj); err != nil || back != tc.topic {
			t.Errorf("Decode(%q) = %q, %v", tc.subj, back, err)
		}
	}
	for f, want := range map[string][]string{
		"#": {">"}, "a/#": {"a", "a.>"}, "+/b": {"*.b"}, "a/+/#": {"a.*", "a.*.>"}, "/#": {"~", "~.>"},
	} {
		if got := Filter(f); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("Filter(%q) = %q, want %q", f, got, want)
		}
	}
	for _, bad := range []string{"a..b", "~4", "~41", "a~2e", "a b", ""} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}

// matches is whether the NATS subjects of filter f match topic name tp,
// as NATS matches them, with the '$' rule.
func matches(f, tp string) bool {
	ts := Topic(tp)
	for _, fs := range Filter(f) {
		if !server.IsValidSubject(fs) {
			return false
		}
		if server.SubjectMatchesFilter(ts, fs) != Match(fs, ts) && !strings.HasPrefix(ts, "$") {
			return false
		}
		if Match(fs, ts) {
			return true
		}
	}
	return false
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"a/b", "a.b", "/", "", " ", "$SYS/#", "~", "~7E", "a//b", "\x7f", "é/ü", "*", ">"} {
		f.Add(s, "a/#")
	}
	f.Fuzz(func(t *testing.T, tp, filter string) {
		if topic.ValidName(tp, 0) == nil {
			s := Topic(tp)
			if !server.IsValidLiteralSubject(s) {
				t.Fatalf("Topic(%q) = %q is not a literal NATS subject", tp, s)
			}
			back, err := Decode(s)
			if err != nil || back != tp {
				t.Fatalf("Decode(Topic(%q)) = %q, %v", tp, back, err)
			}
			if topic.ValidFilter(filter, 0) == nil && !strings.HasPrefix(filter, "$share/") {
				if got, want := matches(filter, tp), topic.Match(filter, tp); got != want {
					t.Fatalf("filter %q topic %q: subjects match %v, MQTT %v", filter, tp, got, want)
				}
			}
		}
	})
}

// TestRandomMatch checks match equivalence on random topic/filter pairs
// from a small alphabet, where matches are frequent.
func TestRandomMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "", ".", " ", "$x", "~", "*", ">", "é"}
	for range 200000 {
		n := 1 + r.IntN(4)
		var tl, fl []string
		for i := range n {
			tl = append(tl, levels[r.IntN(len(levels))])
			switch x := r.IntN(6); {
			case x == 0:
				fl = append(fl, "+")
			case x == 1 && i == n-1:
				fl = append(fl, "#")
			case x == 2:
				fl = append(fl, tl[i])
			default:
				fl = append(fl, levels[r.IntN(len(levels))])
			}
		}
		if r.IntN(3) == 0 {
			fl = fl[:len(fl)-1]
			fl = append(fl, "#")
		}
		tp, f := strings.Join(tl, "/"), strings.Join(fl, "/")
		if topic.ValidName(tp, 0) != nil || topic.ValidFilter(f, 0) != nil {
			continue
		}
		if got, want := matches(f, tp), topic.Match(f, tp); got != want {
			t.Fatalf("filter %q topic %q: subjects match %v, MQTT %v (%q vs %q)", f, tp, got, want, Filter(f), Topic(tp))
		}
	}
}
