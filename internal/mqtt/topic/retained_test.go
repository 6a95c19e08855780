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
			var want []string
			for tp, m := range model {
				if Match(f, tp) {
					want = append(want, fmt.Sprintf("%s|%d", tp, m))
				}
			}
			slices.Sort(want)
			if got := retainedMatches(r, f); !slices.Equal(got, want) {
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

func TestRetainedConcurrent(t *testing.T) {
	r := NewRetained[int]()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rnd := rand.New(rand.NewSource(int64(g)))
			for range 2000 {
				switch rnd.Intn(4) {
				case 0:
					r.Set(randTopic(rnd), g)
				case 1:
					r.Delete(randTopic(rnd))
				case 2:
					r.Get(randTopic(rnd))
				default:
					r.Match(randFilter(rnd), func(string, int) {})
				}
			}
		})
	}
	wg.Wait()
}
