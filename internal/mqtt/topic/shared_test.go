package topic

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
)

// sharedMatches returns SharedIndex.Match's results, each
// "group|filter|sub=value,...", sorted by group and filter but with members
// in the order Match gave them.
func sharedMatches(x *SharedIndex[string, int], topic string) []string {
	var got []string
	x.Match(topic, func(group, filter string, members []Entry[string, int]) {
		var b strings.Builder
		fmt.Fprintf(&b, "%s|%s|", group, filter)
		for _, m := range members {
			fmt.Fprintf(&b, "%s=%d,", m.Sub, m.Value)
		}
		got = append(got, b.String())
	})
	slices.Sort(got)
	return got
}

func TestSharedIndex(t *testing.T) {
	var x SharedIndex[string, int] // the zero value is ready to use
	x.Subscribe("g1", "a/+", "c1", 1)
	x.Subscribe("g1", "a/+", "c2", 2)
	x.Subscribe("g1", "a/+", "c3", 3)
	x.Subscribe("g2", "a/+", "c1", 4)
	x.Subscribe("g1", "a/#", "c1", 5)
	if !x.Subscribe("g1", "a/+", "c2", 20) {
		t.Fatal("replaced member reported as new")
	}
	if x.Len() != 5 {
		t.Fatalf("Len = %d, want 5", x.Len())
	}
	want := []string{"g1|a/#|c1=5,", "g1|a/+|c1=1,c2=20,c3=3,", "g2|a/+|c1=4,"}
	if got := sharedMatches(&x, "a/b"); !slices.Equal(got, want) {
		t.Fatalf("Match = %q, want %q", got, want)
	}
	if got := sharedMatches(&x, "$SYS/b"); got != nil {
		t.Fatalf("Match($SYS/b) = %q", got)
	}
	// Unsubscribing keeps the order of the rest.
	if !x.Unsubscribe("g1", "a/+", "c1") || x.Unsubscribe("g1", "a/+", "c1") || x.Unsubscribe("g3", "a/+", "c2") {
		t.Fatal("Unsubscribe reported wrongly")
	}
	x.Subscribe("g1", "a/+", "c1", 6)
	if got := x.Members("g1", "a/+"); len(got) != 3 || got[0].Sub != "c2" || got[2].Sub != "c1" {
		t.Fatalf("Members = %v", got)
	}
	for _, s := range []struct{ g, f, sub string }{
		{"g1", "a/+", "c1"}, {"g1", "a/+", "c2"}, {"g1", "a/+", "c3"}, {"g2", "a/+", "c1"}, {"g1", "a/#", "c1"},
	} {
		if !x.Unsubscribe(s.g, s.f, s.sub) {
			t.Fatalf("Unsubscribe(%q, %q, %q) = false", s.g, s.f, s.sub)
		}
	}
	if x.Len() != 0 || x.root.children != nil {
		t.Fatal("not empty after unsubscribing all")
	}
	if _, ok := x.Next("g1", "a/+"); ok {
		t.Fatal("Next on an empty index")
	}
}

func TestSharedIndexRoundRobin(t *testing.T) {
	x := NewSharedIndex[string, int]()
	for _, s := range []string{"c1", "c2", "c3"} {
		x.Subscribe("g", "a/#", s, 0)
	}
	var got []string
	for range 6 {
		x.MatchTurn("a/b", func(group, filter string, members []Entry[string, int], turn uint64) {
			got = append(got, members[turn%uint64(len(members))].Sub)
		})
	}
	for range 3 {
		e, ok := x.Next("g", "a/#")
		if !ok {
			t.Fatal("Next: none")
		}
		got = append(got, e.Sub)
	}
	want := []string{"c1", "c2", "c3", "c1", "c2", "c3", "c1", "c2", "c3"}
	if !slices.Equal(got, want) {
		t.Fatalf("turns = %q, want %q", got, want)
	}
	if _, ok := x.Next("g", "a/+"); ok {
		t.Fatal("Next on a missing filter")
	}
	if _, ok := x.Next("h", "a/#"); ok {
		t.Fatal("Next on a missing group")
	}
}

func TestSharedIndexRandom(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	x := NewSharedIndex[string, int]()
	type key struct{ group, filter string }
	model := map[key][]Entry[string, int]{} // members in order
	n := 0
	groups := []string{"g1", "g2"}
	subs := []string{"c1", "c2", "c3", "c4"}
	for op := range 20000 {
		k := key{groups[r.Intn(len(groups))], randFilter(r)}
		s := subs[r.Intn(len(subs))]
		switch c := r.Intn(10); {
		case c < 4:
			v := r.Intn(100)
			i := slices.IndexFunc(model[k], func(e Entry[string, int]) bool { return e.Sub == s })
			if existed := x.Subscribe(k.group, k.filter, s, v); existed != (i >= 0) {
				t.Fatalf("op %d: Subscribe existed = %v", op, existed)
			}
			if i >= 0 {
				model[k][i].Value = v
			} else {
				model[k] = append(model[k], Entry[string, int]{s, v})
				n++
			}
		case c < 7:
			if r.Intn(2) == 0 {
				for mk, m := range model {
					k, s = mk, m[r.Intn(len(m))].Sub
					break
				}
			}
			i := slices.IndexFunc(model[k], func(e Entry[string, int]) bool { return e.Sub == s })
			if existed := x.Unsubscribe(k.group, k.filter, s); existed != (i >= 0) {
				t.Fatalf("op %d: Unsubscribe(%v, %q) = %v", op, k, s, existed)
			}
			if i >= 0 {
				model[k] = slices.Delete(model[k], i, i+1)
				if len(model[k]) == 0 {
					delete(model, k)
				}
				n--
			}
		default:
			topic := randTopic(r)
			var want []string
			for k, m := range model {
				if Match(k.filter, topic) {
					var b strings.Builder
					fmt.Fprintf(&b, "%s|%s|", k.group, k.filter)
					for _, e := range m {
						fmt.Fprintf(&b, "%s=%d,", e.Sub, e.Value)
					}
					want = append(want, b.String())
				}
			}
			slices.Sort(want)
			if got := sharedMatches(x, topic); !slices.Equal(got, want) {
				t.Fatalf("op %d: Match(%q) = %q, want %q", op, topic, got, want)
			}
		}
		if x.Len() != n {
			t.Fatalf("op %d: Len = %d, want %d", op, x.Len(), n)
		}
	}
}

func TestSharedIndexMatchAllocs(t *testing.T) {
	x := NewSharedIndex[string, int]()
	x.Subscribe("g", "a/+", "c1", 1)
	x.Subscribe("g", "a/+", "c2", 1)
	x.Subscribe("h", "#", "c1", 1)
	n := 0
	fn := func(_, _ string, m []Entry[string, int]) { n += len(m) }
	fnTurn := func(_, _ string, m []Entry[string, int], turn uint64) { n += int(turn % uint64(len(m))) }
	if a := testing.AllocsPerRun(100, func() { x.Match("a/b", fn); x.MatchTurn("a/b", fnTurn) }); a != 0 {
		t.Fatalf("Match allocates %v times", a)
	}
}

// TestSharedIndexConcurrent runs shared subscribes, unsubscribes, Next and
// MatchTurn from many goroutines (for -race), each as its own member of
// one group, then checks the final index against what each goroutine's own
// operations leave.
func TestSharedIndexConcurrent(t *testing.T) {
	x := NewSharedIndex[int, int]()
	models := make([]map[string]int, concurrentWriters) // per member: filter -> value
	var wg sync.WaitGroup
	for g := range concurrentWriters {
		wg.Go(func() {
			r := rand.New(rand.NewSource(int64(g)))
			m := map[string]int{}
			for i := range 2000 {
				switch r.Intn(4) {
				case 0:
					f := randFilter(r)
					x.Subscribe("g", f, g, i)
					m[f] = i
				case 1:
					f := randFilter(r)
					x.Unsubscribe("g", f, g)
					delete(m, f)
				case 2:
					x.Next("g", randFilter(r))
				default:
					x.MatchTurn(randTopic(r), func(_, _ string, m []Entry[int, int], turn uint64) {
						_ = m[turn%uint64(len(m))]
					})
				}
			}
			models[g] = m
		})
	}
	wg.Wait()

	want := map[string]int{}
	for g, m := range models {
		for f, v := range m {
			want[fmt.Sprintf("g|%s|%d", f, g)] = v
		}
	}
	got := map[string]int{}
	x.Range(func(group, f string, members []Entry[int, int]) bool {
		for _, e := range members {
			got[fmt.Sprintf("%s|%s|%d", group, f, e.Sub)] = e.Value
		}
		return true
	})
	if d := stateDiff(got, want); d != "" {
		t.Fatalf("final shared index differs from the members' operations: %s", d)
	}
	if x.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(want))
	}
}
