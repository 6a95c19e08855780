package topic

import (
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
)

func retainedMatches(r *Retained[int], filter string) []string {
	var got []string
	r.Match(filter, func(topic string, m int) {
		got = append(got, fmt.Sprintf("%s|%d", topic, m))
	})
	slices.Sort(got)
	return got
}

// naiveRetained is what retainedMatches must return for filter f when the
// retained messages are model (topic -> message).
func naiveRetained(model map[string]int, f string) []string {
	var want []string
	for tp, m := range model {
		if Match(f, tp) {
			want = append(want, fmt.Sprintf("%s|%d", tp, m))
		}
	}
	slices.Sort(want)
	return want
}

func TestRetainedMatchCases(t *testing.T) {
	for _, tt := range matchCases {
		t.Run(tt.name, func(t *testing.T) {
			var r Retained[int] // the zero value is ready to use
			r.Set(tt.topic, 1)
			got := len(retainedMatches(&r, tt.filter)) == 1
			if got != tt.want {
				t.Fatalf("filter %q topic %q: matched %v, want %v", tt.filter, tt.topic, got, tt.want)
			}
		})
	}
}

func TestRetained(t *testing.T) {
	r := NewRetained[int]()
	if r.Set("a/b", 1) || r.Set("a", 2) || !r.Set("a/b", 3) {
		t.Fatal("Set replaced reported wrongly")
	}
	r.Set("$SYS/x", 4)
	r.Set("/", 5)
	if m, ok := r.Get("a/b"); !ok || m != 3 {
		t.Fatalf("Get = %v, %v", m, ok)
	}
	if _, ok := r.Get("a/b/c"); ok {
		t.Fatal("Get of a missing topic")
	}
	if r.Len() != 4 {
		t.Fatalf("Len = %d", r.Len())
	}
	for _, tt := range []struct {
		filter string
		want   []string
	}{
		{"a/#", []string{"a/b|3", "a|2"}},
		{"#", []string{"/|5", "a/b|3", "a|2"}},
		{"+", []string{"a|2"}},
		{"+/+", []string{"/|5", "a/b|3"}},
		{"$SYS/#", []string{"$SYS/x|4"}},
		{"+/x", nil},
		{"a/b/#", []string{"a/b|3"}},
	} {
		if got := retainedMatches(r, tt.filter); !slices.Equal(got, tt.want) {
			t.Errorf("Match(%q) = %q, want %q", tt.filter, got, tt.want)
		}
	}
	if !r.Delete("a") || r.Delete("a") || r.Delete("x/y") {
		t.Fatal("Delete reported wrongly")
	}
	if got := retainedMatches(r, "a/#"); !slices.Equal(got, []string{"a/b|3"}) {
		t.Fatalf("after Delete: %q", got)
	}
	for _, tp := range []string{"a/b", "$SYS/x", "/"} {
		r.Delete(tp)
	}
	if r.Len() != 0 || r.root.children != nil {
		t.Fatal("not empty after deleting all")
	}
}

func TestRetainedRandom(t *testing.T) {
	rnd := rand.New(rand.NewSource(3))
	r := NewRetained[int]()
	model := map[string]int{}
	for op := range 20000 {
		switch k := rnd.Intn(10); {
		case k < 4:
			tp, m := randTopic(rnd), rnd.Intn(100)
			_, had := model[tp]
			if r.Set(tp, m) != had {
				t.Fatalf("op %d: Set(%q) replaced != %v", op, tp, had)
			}
			model[tp] = m
		case k < 6:
			tp := randTopic(rnd)
			_, had := model[tp]
			if r.Delete(tp) != had {
				t.Fatalf("op %d: Delete(%q) != %v", op, tp, had)
			}
			delete(model, tp)
		case k < 7:
			tp := randTopic(rnd)
			want, had := model[tp]
			if m, ok := r.Get(tp); ok != had || m != want {
				t.Fatalf("op %d: Get(%q) = %v, %v", op, tp, m, ok)
			}
		default:
			f := randFilter(rnd)
			if got, want := retainedMatches(r, f), naiveRetained(model, f); !slices.Equal(got, want) {
				t.Fatalf("op %d: Match(%q) = %q, want %q", op, f, got, want)
			}
		}
		if r.Len() != len(model) {
			t.Fatalf("op %d: Len = %d, want %d", op, r.Len(), len(model))
		}
	}
	for tp := range model {
		r.Delete(tp)
	}
	if r.Len() != 0 || r.root.children != nil {
		t.Fatal("not empty after deleting all")
	}
}

// TestRetainedConcurrent sets, deletes, gets and matches retained
// messages from many goroutines (for -race), on topics of their own and on
// topics they share, then checks the final state: a topic of one goroutine
// holds its last write; a shared topic holds the last write of one of the
// goroutines that wrote it (or is absent if that was a delete); and Match
// agrees with the final state.
func TestRetainedConcurrent(t *testing.T) {
	r := NewRetained[int]()
	lasts := make([]map[string]int, concurrentWriters) // per goroutine: topic -> last value set, or -1 for a delete
	var wg sync.WaitGroup
	for g := range concurrentWriters {
		wg.Go(func() {
			rnd := rand.New(rand.NewSource(int64(g)))
			last := map[string]int{}
			topic := func() string {
				if rnd.Intn(2) == 0 {
					return fmt.Sprintf("own%d/%s", g, randTopic(rnd))
				}
				return randTopic(rnd)
			}
			for i := range 2000 {
				switch rnd.Intn(4) {
				case 0:
					tp, v := topic(), g*10000+i
					r.Set(tp, v)
					last[tp] = v
				case 1:
					tp := topic()
					r.Delete(tp)
					last[tp] = -1
				case 2:
					r.Get(randTopic(rnd))
				default:
					r.Match(randFilter(rnd), func(string, int) {})
				}
			}
			lasts[g] = last
		})
	}
	wg.Wait()

	got := map[string]int{}
	r.Range(func(tp string, v int) bool {
		got[tp] = v
		return true
	})
	if r.Len() != len(got) {
		t.Fatalf("Len = %d, Range gave %d", r.Len(), len(got))
	}
	outcomes := map[string][]int{} // topic -> the last op of each goroutine that wrote it
	for _, last := range lasts {
		for tp, v := range last {
			outcomes[tp] = append(outcomes[tp], v)
		}
	}
	for tp, vs := range outcomes {
		v, ok := got[tp]
		if !ok {
			v = -1
		}
		if !slices.Contains(vs, v) {
			t.Errorf("topic %q holds %d (-1: none), want one of the writers' last writes %v", tp, v, vs)
		}
	}
	for tp := range got {
		if _, ok := outcomes[tp]; !ok {
			t.Errorf("topic %q retained but never set", tp)
		}
	}
	rnd := rand.New(rand.NewSource(99))
	for range 200 {
		f := randFilter(rnd)
		if m, want := retainedMatches(r, f), naiveRetained(got, f); !slices.Equal(m, want) {
			t.Fatalf("Match(%q) = %q, want %q", f, m, want)
		}
	}
}
