package topic

import (
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
)

// matches returns Index.Match's results as sorted "filter|sub|value" strings.
func matches(x *Index[string, int], topic string) []string {
	var got []string
	x.Match(topic, func(filter, sub string, v int) {
		got = append(got, fmt.Sprintf("%s|%s|%d", filter, sub, v))
	})
	slices.Sort(got)
	return got
}

func TestIndexMatchCases(t *testing.T) {
	for _, tt := range matchCases {
		t.Run(tt.name, func(t *testing.T) {
			var x Index[string, int] // the zero value is ready to use
			x.Subscribe(tt.filter, "c", 1)
			got := len(matches(&x, tt.topic)) == 1
			if got != tt.want {
				t.Fatalf("filter %q topic %q: matched %v, want %v", tt.filter, tt.topic, got, tt.want)
			}
		})
	}
}

func TestIndexSubscribeUnsubscribe(t *testing.T) {
	x := NewIndex[string, int]()
	if x.Subscribe("a/+", "c1", 1) {
		t.Fatal("new subscription reported as existing")
	}
	if !x.Subscribe("a/+", "c1", 2) {
		t.Fatal("replaced subscription reported as new")
	}
	x.Subscribe("a/#", "c1", 3)
	x.Subscribe("a/+", "c2", 4)
	if x.Len() != 3 {
		t.Fatalf("Len = %d, want 3", x.Len())
	}
	if v, ok := x.Get("a/+", "c1"); !ok || v != 2 {
		t.Fatalf("Get = %v, %v; want 2, true", v, ok)
	}
	want := []string{"a/#|c1|3", "a/+|c1|2", "a/+|c2|4"}
	if got := matches(x, "a/b"); !slices.Equal(got, want) {
		t.Fatalf("Match = %q, want %q", got, want)
	}
	if x.Unsubscribe("a/+", "c3") || x.Unsubscribe("x/y", "c1") || x.Unsubscribe("a", "c1") {
		t.Fatal("Unsubscribe of a missing subscription reported true")
	}
	for _, s := range []struct{ f, sub string }{{"a/+", "c1"}, {"a/#", "c1"}, {"a/+", "c2"}} {
		if !x.Unsubscribe(s.f, s.sub) {
			t.Fatalf("Unsubscribe(%q, %q) = false", s.f, s.sub)
		}
	}
	if x.Len() != 0 || len(matches(x, "a/b")) != 0 {
		t.Fatalf("Len = %d after unsubscribing all", x.Len())
	}
	if x.root.children != nil || x.root.plus != nil || x.root.hash != nil {
		t.Fatal("empty nodes were not pruned")
	}
}

// TestIndexManySubscribers crosses the threshold where a filter's entries
// get a position map, in both directions, and checks order and values.
func TestIndexManySubscribers(t *testing.T) {
	x := NewIndex[int, int]()
	const n = 100
	for i := range n {
		x.Subscribe("a", i, i)
	}
	for i := 0; i < n; i += 2 {
		x.Subscribe("a", i, -i) // replace the even ones
	}
	for i := 1; i < n; i += 2 {
		x.Unsubscribe("a", i) // remove the odd ones
	}
	var got []int
	x.Match("a", func(_ string, sub, v int) {
		if v != -sub {
			t.Fatalf("sub %d value %d", sub, v)
		}
		got = append(got, sub)
	})
	if len(got) != n/2 || !slices.IsSorted(got) {
		t.Fatalf("got %v", got)
	}
	for i := 0; i < n; i += 2 {
		x.Unsubscribe("a", i)
		if v, ok := x.Get("a", i+2); i+2 < n && (!ok || v != -(i+2)) {
			t.Fatalf("Get(%d) = %v, %v after removing %d", i+2, v, ok, i)
		}
	}
	if x.Len() != 0 || x.root.children != nil {
		t.Fatal("not empty")
	}
}

// TestIndexRandom runs random Subscribe, Unsubscribe and Match operations
// against a map and the naive Match.
func TestIndexRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	x := NewIndex[string, int]()
	type key struct{ filter, sub string }
	model := map[key]int{}
	subs := []string{"c1", "c2", "c3"}
	for op := range 20000 {
		switch k := r.Intn(10); {
		case k < 4:
			f, s, v := randFilter(r), subs[r.Intn(len(subs))], r.Intn(100)
			_, had := model[key{f, s}]
			if existed := x.Subscribe(f, s, v); existed != had {
				t.Fatalf("op %d: Subscribe(%q, %q) existed = %v, want %v", op, f, s, existed, had)
			}
			model[key{f, s}] = v
		case k < 7:
			f, s := randFilter(r), subs[r.Intn(len(subs))]
			if r.Intn(2) == 0 && len(model) > 0 {
				for k := range model { // unsubscribe something that exists
					f, s = k.filter, k.sub
					break
				}
			}
			_, had := model[key{f, s}]
			if existed := x.Unsubscribe(f, s); existed != had {
				t.Fatalf("op %d: Unsubscribe(%q, %q) = %v, want %v", op, f, s, existed, had)
			}
			delete(model, key{f, s})
		default:
			topic := randTopic(r)
			var want []string
			for k, v := range model {
				if Match(k.filter, topic) {
					want = append(want, fmt.Sprintf("%s|%s|%d", k.filter, k.sub, v))
				}
			}
			slices.Sort(want)
			if got := matches(x, topic); !slices.Equal(got, want) {
				t.Fatalf("op %d: Match(%q) = %q, want %q", op, topic, got, want)
			}
		}
		if x.Len() != len(model) {
			t.Fatalf("op %d: Len = %d, want %d", op, x.Len(), len(model))
		}
	}
	for k := range model {
		x.Unsubscribe(k.filter, k.sub)
	}
	if x.Len() != 0 || x.root.children != nil || x.root.plus != nil || x.root.hash != nil {
		t.Fatal("index not empty after unsubscribing everything")
	}
}

func TestIndexMatchAllocs(t *testing.T) {
	x := NewIndex[string, int]()
	for _, f := range []string{"a/b", "a/+", "a/#", "#", "+/b", "$SYS/#"} {
		x.Subscribe(f, "c", 1)
	}
	n := 0
	fn := func(string, string, int) { n++ }
	if a := testing.AllocsPerRun(100, func() { x.Match("a/b", fn) }); a != 0 {
		t.Fatalf("Match allocates %v times", a)
	}
	if n == 0 {
		t.Fatal("no matches")
	}
}

// TestIndexConcurrent matches from many goroutines while they subscribe
// and unsubscribe (for -race), each as its own subscriber, then checks the
// final index against what each goroutine's own sequence of operations
// leaves: the same (filter, subscriber, value) triples, and Match agreeing
// with a naive matcher over them.
func TestIndexConcurrent(t *testing.T) {
	x := NewIndex[int, int]()
	models := make([]map[string]int, concurrentWriters) // per subscriber: filter -> value
	var wg sync.WaitGroup
	for g := range concurrentWriters {
		wg.Go(func() {
			r := rand.New(rand.NewSource(int64(g)))
			m := map[string]int{}
			for i := range 2000 {
				switch r.Intn(3) {
				case 0:
					f := randFilter(r)
					x.Subscribe(f, g, i)
					m[f] = i
				case 1:
					f := randFilter(r)
					x.Unsubscribe(f, g)
					delete(m, f)
				default:
					x.Match(randTopic(r), func(string, int, int) {})
				}
			}
			models[g] = m
		})
	}
	wg.Wait()

	want := map[string]int{}
	for g, m := range models {
		for f, v := range m {
			want[fmt.Sprintf("%s|%d", f, g)] = v
		}
	}
	got := map[string]int{}
	x.Range(func(f string, sub, v int) bool {
		got[fmt.Sprintf("%s|%d", f, sub)] = v
		return true
	})
	if d := stateDiff(got, want); d != "" {
		t.Fatalf("final index differs from the subscribers' operations: %s", d)
	}
	if x.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(want))
	}
	r := rand.New(rand.NewSource(99))
	for range 500 {
		tp := randTopic(r)
		var gotM, wantM []string
		x.Match(tp, func(f string, sub, v int) { gotM = append(gotM, fmt.Sprintf("%s|%d=%d", f, sub, v)) })
		for g, m := range models {
			for f, v := range m {
				if Match(f, tp) {
					wantM = append(wantM, fmt.Sprintf("%s|%d=%d", f, g, v))
				}
			}
		}
		slices.Sort(gotM)
		slices.Sort(wantM)
		if !slices.Equal(gotM, wantM) {
			t.Fatalf("Match(%q) = %q, want %q", tp, gotM, wantM)
		}
	}
}
