package topic

import (
	"fmt"
	"slices"
	"testing"
)

func TestRange(t *testing.T) {
	x := NewIndex[string, int]()
	s := NewSharedIndex[string, int]()
	r := NewRetained[int]()
	var want, wantShared, wantRetained []string
	for i, f := range []string{"a", "a/b", "+", "#", "a/+/#", "/", "$SYS/#"} {
		x.Subscribe(f, "c1", i)
		x.Subscribe(f, "c2", -i)
		want = append(want, fmt.Sprint(f, "|c1|", i), fmt.Sprint(f, "|c2|", -i))
		s.Subscribe("g", f, "c1", i)
		wantShared = append(wantShared, fmt.Sprint("g|", f, "|1"))
		if !HasWildcard(f) {
			r.Set(f, i)
			wantRetained = append(wantRetained, fmt.Sprint(f, "|", i))
		}
	}
	var got []string
	x.Range(func(f, sub string, v int) bool {
		got = append(got, fmt.Sprint(f, "|", sub, "|", v))
		return true
	})
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Index.Range = %q, want %q", got, want)
	}
	got = nil
	s.Range(func(g, f string, m []Entry[string, int]) bool {
		got = append(got, fmt.Sprint(g, "|", f, "|", len(m)))
		return true
	})
	slices.Sort(got)
	slices.Sort(wantShared)
	if !slices.Equal(got, wantShared) {
		t.Errorf("SharedIndex.Range = %q, want %q", got, wantShared)
	}
	got = nil
	r.Range(func(tp string, m int) bool {
		got = append(got, fmt.Sprint(tp, "|", m))
		return true
	})
	slices.Sort(got)
	slices.Sort(wantRetained)
	if !slices.Equal(got, wantRetained) {
		t.Errorf("Retained.Range = %q, want %q", got, wantRetained)
	}

	// Returning false stops.
	n := 0
	x.Range(func(string, string, int) bool { n++; return false })
	s.Range(func(string, string, []Entry[string, int]) bool { n++; return false })
	r.Range(func(string, int) bool { n++; return false })
	if n != 3 {
		t.Errorf("Range did not stop: %d calls", n)
	}
}

// TestSharedIndexManyGroups crosses the threshold where a filter's groups
// get a position map, in both directions.
func TestSharedIndexManyGroups(t *testing.T) {
	x := NewSharedIndex[int, int]()
	const n = 60
	for i := range n {
		x.Subscribe(fmt.Sprint("g", i), "a/+", i, i)
		x.Subscribe(fmt.Sprint("g", i), "a/+", i+1000, i)
	}
	for i := 0; i < n; i += 2 {
		x.Unsubscribe(fmt.Sprint("g", i), "a/+", i)
		x.Unsubscribe(fmt.Sprint("g", i), "a/+", i+1000)
	}
	var got []string
	x.Match("a/b", func(g, _ string, m []Entry[int, int]) {
		if len(m) != 2 || m[0].Sub != m[1].Sub-1000 || g != fmt.Sprint("g", m[0].Sub) {
			t.Fatalf("group %s members %v", g, m)
		}
		got = append(got, g)
	})
	if len(got) != n/2 {
		t.Fatalf("%d groups, want %d", len(got), n/2)
	}
	for i := 1; i < n; i += 2 {
		if e, ok := x.Next(fmt.Sprint("g", i), "a/+"); !ok || e.Value != i {
			t.Fatalf("Next(g%d) = %v, %v", i, e, ok)
		}
		x.Unsubscribe(fmt.Sprint("g", i), "a/+", i)
		x.Unsubscribe(fmt.Sprint("g", i), "a/+", i+1000)
	}
	if x.Len() != 0 || x.root.children != nil {
		t.Fatal("not empty")
	}
}
