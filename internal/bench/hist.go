package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in nanoseconds from 1 ns to one minute with three
// significant digits (about 0.1% error), about 200 KiB per histogram.
const (
	histMin    = 1
	histMax    = int64(time.Minute)
	histDigits = 3
	histShards = 16
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histDigits)
}

// latencies is a sharded histogram: subscriber i records into shard
// i%histShards, so thousands of subscribers share 16 histograms and rarely
// contend on a lock.
type latencies struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
		_  [40]byte // keep shard locks on separate cache lines
	}
}

func newLatencies() *latencies {
	l := &latencies{}
	for i := range l.shards {
		l.shards[i].h = newHist()
	}
	return l
}

// record adds one latency; values beyond a minute are clamped.
func (l *latencies) record(shard int, d time.Duration) {
	v := int64(d)
	v = min(max(v, histMin), histMax)
	s := &l.shards[shard%histShards]
	s.mu.Lock()
	s.h.RecordValue(v)
	s.mu.Unlock()
}

// merged returns one histogram with every shard's values.
func (l *latencies) merged() *hdrhistogram.Histogram {
	out := newHist()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		out.Merge(s.h)
		s.mu.Unlock()
	}
	return out
}

// LatencySummary is the latency part of a Summary, in microseconds.
type LatencySummary struct {
	Count  int64   `json:"count"`
	MinUS  float64 `json:"min_us"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P90US  float64 `json:"p90_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

func summarizeHist(h *hdrhistogram.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	us := func(ns int64) float64 { return float64(ns/10) / 100 } // 2 decimals
	return LatencySummary{
		Count:  h.TotalCount(),
		MinUS:  us(h.Min()),
		MeanUS: us(int64(h.Mean())),
		P50US:  us(h.ValueAtQuantile(50)),
		P90US:  us(h.ValueAtQuantile(90)),
		P99US:  us(h.ValueAtQuantile(99)),
		P999US: us(h.ValueAtQuantile(99.9)),
		MaxUS:  us(h.Max()),
	}
}
