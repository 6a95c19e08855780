package bench

import (
	"testing"
	"time"
)

func TestLatenciesMerge(t *testing.T) {
	l := newLatencies()
	// 1..1000 µs spread over every shard.
	for i := 1; i <= 1000; i++ {
		l.record(i, time.Duration(i)*time.Microsecond)
	}
	h := l.merged()
	if h.TotalCount() != 1000 {
		t.Fatalf("count %d", h.TotalCount())
	}
	s := summarizeHist(h)
	near := func(name string, got, want float64) {
		if got < want*0.99 || got > want*1.01 {
			t.Errorf("%s = %v µs, want %v ± 1%%", name, got, want)
		}
	}
	near("p50", s.P50US, 500)
	near("p90", s.P90US, 900)
	near("p99", s.P99US, 990)
	near("p99.9", s.P999US, 999)
	near("max", s.MaxUS, 1000)
	near("min", s.MinUS, 1)
	// Merging is additive: a second merge of the same shards doubles counts.
	h.Merge(l.merged())
	if h.TotalCount() != 2000 {
		t.Errorf("after merge: %d", h.TotalCount())
	}
}

func TestLatenciesClamp(t *testing.T) {
	l := newLatencies()
	l.record(0, 2*time.Hour)
	l.record(0, -time.Second)
	if s := summarizeHist(l.merged()); s.Count != 2 || s.MaxUS < 59e6 {
		t.Errorf("clamped: %+v", s)
	}
	if s := summarizeHist(newHist()); s != (LatencySummary{}) {
		t.Errorf("empty: %+v", s)
	}
}

func TestPayloadStamp(t *testing.T) {
	p := newPayload(64)
	now := time.Unix(5, 123)
	stampPayload(p, 7, 42, now)
	pub, seq, sent, ok := readStamp(p)
	if !ok || pub != 7 || seq != 42 || sent != now.UnixNano() {
		t.Errorf("got %d %d %d %v", pub, seq, sent, ok)
	}
	if _, _, _, ok := readStamp(p[:headerLen-1]); ok {
		t.Error("short payload parsed")
	}
}
