package bench

import (
	"math/rand"
	"testing"
)

func TestStream(t *testing.T) {
	cases := []struct {
		name                          string
		seqs                          []uint64
		sent                          int64
		lost, dups, reordered, unique int64
	}{
		{"in order", []uint64{1, 2, 3, 4}, 4, 0, 0, 0, 4},
		{"tail loss", []uint64{1, 2}, 4, 2, 0, 0, 2},
		{"head loss", []uint64{3, 4}, 4, 2, 0, 0, 2},
		{"gap", []uint64{1, 2, 5, 6}, 6, 2, 0, 0, 4},
		{"gap unknown sent", []uint64{1, 2, 5, 6}, 0, 2, 0, 0, 4},
		{"duplicate", []uint64{1, 2, 2, 3}, 3, 0, 1, 0, 3},
		{"old duplicate", []uint64{1, 2, 3, 1}, 3, 0, 1, 0, 3},
		{"reorder", []uint64{1, 3, 2, 4}, 4, 0, 0, 1, 4},
		{"reorder then dup", []uint64{1, 4, 2, 2, 3}, 4, 0, 1, 2, 4},
		{"middle of gap", []uint64{1, 10, 5, 4, 6}, 10, 5, 0, 3, 5},
		{"nothing", nil, 5, 5, 0, 0, 0},
	}
	for _, c := range cases {
		var s stream
		for _, q := range c.seqs {
			s.add(q)
		}
		if got := s.lost(c.sent); got != c.lost || s.dups != c.dups || s.reordered != c.reordered || s.unique != c.unique {
			t.Errorf("%s: lost %d dups %d reordered %d unique %d; want %d %d %d %d",
				c.name, got, s.dups, s.reordered, s.unique, c.lost, c.dups, c.reordered, c.unique)
		}
	}
}

// TestStreamRandom checks the tracker against a naive set on random
// deliveries with loss, duplicates and reordering.
func TestStreamRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for iter := 0; iter < 200; iter++ {
		const sent = 500
		var order []uint64
		for q := uint64(1); q <= sent; q++ {
			if rng.Intn(10) == 0 {
				continue // lost
			}
			order = append(order, q)
			if rng.Intn(20) == 0 {
				order = append(order, q) // duplicate
			}
		}
		for k := 0; k < 30; k++ { // swap neighbours: reordering
			if len(order) > 2 {
				i := rng.Intn(len(order) - 1)
				order[i], order[i+1] = order[i+1], order[i]
			}
		}
		var s stream
		seen := map[uint64]bool{}
		var dups int64
		for _, q := range order {
			if seen[q] {
				dups++
			}
			seen[q] = true
			s.add(q)
		}
		if s.unique != int64(len(seen)) || s.dups != dups || s.lost(sent) != sent-int64(len(seen)) {
			t.Fatalf("iter %d: unique %d/%d dups %d/%d lost %d/%d", iter, s.unique, len(seen), s.dups, dups, s.lost(sent), sent-len(seen))
		}
		// Every gap below max is a lost number.
		var missing int64
		for q := uint64(1); q <= s.max; q++ {
			if !seen[q] {
				missing++
			}
		}
		if s.missing() != missing {
			t.Fatalf("iter %d: missing %d, want %d", iter, s.missing(), missing)
		}
	}
}

func TestSeqStatsSum(t *testing.T) {
	var a SeqStats
	s1 := &stream{}
	s1.add(1)
	s1.add(1)
	s2 := &stream{}
	s2.add(2)
	a.addStream(s1, 2)
	a.addStream(s2, 2)
	if a.Streams != 2 || a.Lost != 2 || a.Dups != 1 || a.Unique != 2 {
		t.Errorf("sum: %+v", a)
	}
}
