package topic

import "testing"

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
