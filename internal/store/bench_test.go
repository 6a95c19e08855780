package store

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchAppliers are the numbers of concurrent appliers benchmarked: one
// client, a busy node, a very busy one.
var benchAppliers = []int{1, 16, 256}

// BenchmarkBoltApply measures durable write throughput: each applier puts
// 200-byte values and waits for done before its next put, like a QoS 1
// publisher waiting for its PUBACK.
func BenchmarkBoltApply(b *testing.B) {
	for _, n := range benchAppliers {
		b.Run(fmt.Sprintf("appliers=%d/size=200B", n), func(b *testing.B) {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "data"), BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			before := s.Stats()
			elapsed := benchApply(b, s, n, 200)
			st := s.Stats()
			commits := st.Commits - before.Commits
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
			b.ReportMetric(float64(commits)/elapsed.Seconds(), "commits/s")
			if commits > 0 {
				b.ReportMetric(float64(st.Applies-before.Applies)/float64(commits), "applies/commit")
				b.ReportMetric(float64((st.CommitTime-before.CommitTime).Microseconds())/float64(commits), "µs/commit")
			}
		})
	}
}

// BenchmarkMemoryApply is BenchmarkBoltApply without a disk: the cost of the
// queue and the callback goroutine.
func BenchmarkMemoryApply(b *testing.B) {
	for _, n := range benchAppliers {
		b.Run(fmt.Sprintf("appliers=%d/size=200B", n), func(b *testing.B) {
			s := NewMemory()
			defer s.Close()
			elapsed := benchApply(b, s, n, 200)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
		})
	}
}

// benchApply runs b.N puts of size-byte values from appliers goroutines,
// each waiting for one put's done before the next, and returns the time it
// took.
func benchApply(b *testing.B, s Store, appliers, size int) time.Duration {
	value := make([]byte, size)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for g := range appliers {
		wg.Go(func() {
			id := strconv.Itoa(g)
			done := make(chan error, 1)
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				s.Apply([]Op{{Kind: Put, Bucket: Messages, Key: MessageKey(id, uint64(i)), Value: value}}, func(err error) { done <- err })
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	return elapsed
}
