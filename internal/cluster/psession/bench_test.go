package psession

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
)

// BenchmarkStore: QoS 1 messages stored in the log, acknowledged once a
// majority has them on disk (sync always), from one publisher with up to
// window Stores waiting at once; replicas=1 is a core alone, replicas=3
// three embedded fabrics on this machine. Reports msgs/s and the
// latency of one Store (p50, p99).
func BenchmarkStore(b *testing.B) {
	for _, n := range []int{1, 3} {
		for _, window := range []int{1, 256, 4096} {
			b.Run(fmt.Sprintf("replicas=%d/window=%d/size=256B", n, window), func(b *testing.B) {
				s := startCluster(b, n, nil)[0].s
				m := &broker.Message{Topic: "bench/t", Payload: []byte(strings.Repeat("p", 256)), QoS: 1}
				lat := make([]time.Duration, b.N)
				sem := make(chan struct{}, window)
				done := make(chan error, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					sem <- struct{}{}
					t0 := time.Now()
					s.Store(m, func(_ uint64, err error) {
						lat[i] = time.Since(t0)
						<-sem
						done <- err
					})
				}
				for range b.N {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
				el := time.Since(start)
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
