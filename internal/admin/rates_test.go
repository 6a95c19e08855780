package admin

import (
	"testing"
	"time"
)

// TestRates: a rate is the counter's growth per second between the last
// two samples; none before two samples, none for a counter that went
// back (a restart of its source).
func TestRates(t *testing.T) {
	var r rates
	t0 := time.Unix(1000, 0)
	r.sample(t0, map[string]int64{"a": 10, "b": 5})
	if r.get("a") != 0 {
		t.Fatalf("a rate after one sample: %v", r.get("a"))
	}
	r.sample(t0.Add(5*time.Second), map[string]int64{"a": 60, "b": 3, "c": 9})
	if r.get("a") != 10 || r.get("b") != 0 || r.get("c") != 0 {
		t.Fatalf("rates a=%v b=%v c=%v, want 10 0 0", r.get("a"), r.get("b"), r.get("c"))
	}
	r.sample(t0.Add(7*time.Second), map[string]int64{"a": 60, "c": 19})
	if r.get("a") != 0 || r.get("c") != 5 {
		t.Fatalf("rates a=%v c=%v, want 0 5", r.get("a"), r.get("c"))
	}
}
