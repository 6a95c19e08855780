package topic

import (
	"fmt"
	"math/rand"
	"testing"
)

// benchFilters returns n filters over topics "site/{s}/dev/{d}/{metric}":
// kind exact, wildcard ('+' and '#' only) or mixed (half exact).
func benchFilters(r *rand.Rand, n int, kind string) []string {
	fs := make([]string, n)
	for i := range fs {
		s, d, m := r.Intn(100), r.Intn(100), r.Intn(10)
		k := r.Intn(4)
		switch kind {
		case "exact":
			k = 0
		case "wildcard":
			k = 1 + r.Intn(3)
		case "mixed":
			if r.Intn(2) == 0 {
				k = 0
			}
		}
		switch k {
		case 0:
			fs[i] = fmt.Sprintf("site/%d/dev/%d/m%d", s, d, m)
		case 1:
			fs[i] = fmt.Sprintf("site/%d/dev/+/m%d", s, m)
		case 2:
			fs[i] = fmt.Sprintf("site/+/dev/%d/#", d)
		default:
			fs[i] = fmt.Sprintf("site/%d/#", s)
		}
	}
	return fs
}

func benchTopics(r *rand.Rand) []string {
	ts := make([]string, 1024)
	for i := range ts {
		ts[i] = fmt.Sprintf("site/%d/dev/%d/m%d", r.Intn(100), r.Intn(100), r.Intn(10))
	}
	return ts
}

func BenchmarkMatch(b *testing.B) {
	for _, subs := range []int{100, 10000, 100000} {
		for _, kind := range []string{"exact", "wildcard", "mixed"} {
			b.Run(fmt.Sprintf("subs=%d/kind=%s", subs, kind), func(b *testing.B) {
				r := rand.New(rand.NewSource(1))
				x := NewIndex[int, uint8]()
				for i, f := range benchFilters(r, subs, kind) {
					x.Subscribe(f, i, 1)
				}
				topics := benchTopics(r)
				matched := 0
				fn := func(string, int, uint8) { matched++ }
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					x.Match(topics[i%len(topics)], fn)
					i++
				}
				b.ReportMetric(float64(matched)/float64(i), "matches/op")
			})
		}
	}
}

func BenchmarkMatchParallel(b *testing.B) {
	b.Run("subs=10000/kind=mixed", func(b *testing.B) {
		r := rand.New(rand.NewSource(1))
		x := NewIndex[int, uint8]()
		for i, f := range benchFilters(r, 10000, "mixed") {
			x.Subscribe(f, i, 1)
		}
		topics := benchTopics(r)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n, i := 0, 0
			fn := func(string, int, uint8) { n++ }
			for pb.Next() {
				x.Match(topics[i%len(topics)], fn)
				i++
			}
		})
	})
}

func BenchmarkSubscribe(b *testing.B) {
	b.Run("subs=10000/kind=mixed", func(b *testing.B) {
		fs := benchFilters(rand.New(rand.NewSource(1)), 10000, "mixed")
		b.ReportAllocs()
		for b.Loop() {
			x := NewIndex[int, uint8]()
			for i, f := range fs {
				x.Subscribe(f, i, 1)
			}
			for i, f := range fs {
				x.Unsubscribe(f, i)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(2*len(fs)), "ns/sub")
	})
}

func BenchmarkSharedMatch(b *testing.B) {
	b.Run("subs=10000/groups=100", func(b *testing.B) {
		r := rand.New(rand.NewSource(1))
		x := NewSharedIndex[int, uint8]()
		for i, f := range benchFilters(r, 10000, "mixed") {
			x.Subscribe(fmt.Sprint("g", i%100), f, i, 1)
		}
		topics := benchTopics(r)
		picked := 0
		fn := func(_, _ string, m []Entry[int, uint8], turn uint64) { picked += m[turn%uint64(len(m))].Sub }
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			x.MatchTurn(topics[i%len(topics)], fn)
			i++
		}
	})
}

func BenchmarkRetainedMatch(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	ret := NewRetained[int]()
	for i := range 100000 {
		ret.Set(fmt.Sprintf("site/%d/dev/%d/m%d", r.Intn(100), r.Intn(100), r.Intn(10)), i)
	}
	for _, c := range []struct{ name, filter string }{
		{"exact", "site/7/dev/7/m7"},
		{"plus", "site/7/dev/+/m7"},
		{"plushash", "site/+/dev/7/#"},
		{"hash", "site/7/#"},
		{"all", "#"},
	} {
		f := c.filter
		b.Run(fmt.Sprintf("retained=100000/filter=%s", c.name), func(b *testing.B) {
			n := 0
			fn := func(string, int) { n++ }
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ret.Match(f, fn)
				i++
			}
			b.ReportMetric(float64(n)/float64(i), "matches/op")
		})
	}
}

func BenchmarkValidFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = ValidFilter("site/123/dev/+/temperature/#", 0)
	}
}
