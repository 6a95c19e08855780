package topic

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMatch checks that for every valid filter and topic name the index,
// the shared index and the retained index agree with the naive Match, and
// that a filter that validates as a name never holds a wildcard.
func FuzzMatch(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.filter, tt.topic)
	}
	f.Add("a/#/b", "a/x/b")
	f.Add("$share/g/#", "$share/g/x")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if ValidName(filter, 0) == nil && HasWildcard(filter) {
			t.Fatalf("ValidName(%q) accepted a wildcard", filter)
		}
		if ValidFilter(filter, 0) != nil || ValidName(topic, 0) != nil {
			return
		}
		want := Match(filter, topic)
		if ValidName(filter, 0) == nil && want != (filter == topic) {
			t.Fatalf("exact filter %q vs %q: Match = %v", filter, topic, want)
		}

		var x Index[int, int]
		x.Subscribe(filter, 1, 1)
		x.Subscribe("unrelated/x", 1, 1)
		got := 0
		x.Match(topic, func(f string, _, _ int) {
			if f == filter {
				got++
			}
		})
		if got != b2i(want) {
			t.Fatalf("Index: filter %q topic %q: %d matches, naive %v", filter, topic, got, want)
		}

		var s SharedIndex[int, int]
		s.Subscribe("g", filter, 1, 1)
		got = 0
		s.Match(topic, func(_, _ string, _ []Entry[int, int]) { got++ })
		if got != b2i(want) {
			t.Fatalf("SharedIndex: filter %q topic %q: %d matches, naive %v", filter, topic, got, want)
		}

		var r Retained[int]
		r.Set(topic, 1)
		r.Set("unrelated/x", 2)
		got = 0
		r.Match(filter, func(tp string, _ int) {
			if tp == topic {
				got++
			}
		})
		if got != b2i(want) {
			t.Fatalf("Retained: filter %q topic %q: %d matches, naive %v", filter, topic, got, want)
		}

		if !x.Unsubscribe(filter, 1) || !s.Unsubscribe("g", filter, 1) || !r.Delete(topic) {
			t.Fatal("removal failed")
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FuzzValid checks ValidName, ValidFilter and ParseShared against a
// reference written from the spec's wording with strings.Split.
func FuzzValid(f *testing.F) {
	for _, tt := range matchCases {
		f.Add(tt.filter)
		f.Add(tt.topic)
	}
	for _, s := range []string{"a/#/b", "a+", "#/", "$share/g/a", "$share//a", "$share/g", "a\x00", "\xff", "$share/g+/a/#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		basic := s != "" && len(s) <= MaxLen && !strings.ContainsRune(s, 0) && utf8.ValidString(s)
		levels := strings.Split(s, "/")
		wantName := basic && !strings.ContainsAny(s, "+#")
		wantFilter := basic
		for i, l := range levels {
			if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
				wantFilter = false // [MQTT-4.7.1-2]
			}
			if strings.Contains(l, "+") && l != "+" {
				wantFilter = false // [MQTT-4.7.1-3]
			}
		}
		if got := ValidName(s, 0) == nil; got != wantName {
			t.Fatalf("ValidName(%q) = %v, want %v", s, got, wantName)
		}
		if got := ValidFilter(s, 0) == nil; got != wantFilter {
			t.Fatalf("ValidFilter(%q) = %v, want %v", s, got, wantFilter)
		}
		for _, max := range []int{1, 2, 3} {
			if got := ValidFilter(s, max) == nil; got != (wantFilter && len(levels) <= max) {
				t.Fatalf("ValidFilter(%q, %d) = %v", s, max, got)
			}
		}

		group, inner, ok, err := ParseShared(s)
		if ok != strings.HasPrefix(s, "$share/") {
			t.Fatalf("ParseShared(%q) ok = %v", s, ok)
		}
		if !ok {
			if group != "" || inner != "" || err != nil {
				t.Fatalf("ParseShared(%q) = %q, %q, %v for a plain filter", s, group, inner, err)
			}
			return
		}
		wantShared := wantFilter && len(levels) >= 3 && levels[1] != "" &&
			!strings.ContainsAny(levels[1], "+#") && ValidFilter(strings.Join(levels[2:], "/"), 0) == nil
		if (err == nil) != wantShared {
			t.Fatalf("ParseShared(%q) err = %v, want valid=%v", s, err, wantShared)
		}
		if err == nil && (group != levels[1] || inner != strings.Join(levels[2:], "/")) {
			t.Fatalf("ParseShared(%q) = %q, %q", s, group, inner)
		}
	})
}
