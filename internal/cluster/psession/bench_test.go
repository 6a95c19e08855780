package psession

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
)

// windowed makes b.N writes with write, at most window waiting at once,
// and returns how long they took; write calls done once with its error.
func windowed(b *testing.B, window int, write func(i int, done func(error))) time.Duration {
	sem := make(chan struct{}, window)
	errs := make(chan error, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		sem <- struct{}{}
		write(i, func(err error) { <-sem; errs <- err })
	}
	for range b.N {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	return el
}

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
				el := windowed(b, window, func(i int, done func(error)) {
					t0 := time.Now()
					s.Store(m, func(_ uint64, err error) { lat[i] = time.Since(t0); done(err) })
				})
				slices.Sort(lat)
				b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

// BenchmarkSave: session records saved (512 bytes of broker data, 1,000
// client ids), up to 256 waiting at once, three cores, sync always; every
// node's index applies each one from the bucket's watch. Reports saves/s.
func BenchmarkSave(b *testing.B) {
	s := startCluster(b, 3, nil)[0].s
	data := []byte(strings.Repeat("d", 512))
	el := windowed(b, 256, func(i int, done func(error)) {
		s.Save(&broker.SessionRecord{ClientID: fmt.Sprint("c", i%1000), Filters: []string{"a/+/c", "d/#"}, Expiry: 3600,
			Cursor: uint64(i), Data: data}, func(_ uint64, err error) { done(err) })
	})
	b.ReportMetric(float64(b.N)/el.Seconds(), "saves/s")
}

// BenchmarkBacklog: one resuming session's backlog read of 10 messages
// among 1000, from clients reading at once; three cores. Reports reads/s.
func BenchmarkBacklog(b *testing.B) {
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("replicas=3/concurrent=%d", par), func(b *testing.B) {
			s := startCluster(b, 3, nil)[0].s
			var last uint64
			for i := range 1000 {
				last = mustStore(b, s, msg(fmt.Sprintf("dev/%d", i%100), "x"))
			}
			el := windowed(b, par, func(i int, done func(error)) {
				go func() {
					n := 0
					_, err := s.Backlog(b.Context(), fmt.Sprint("c", i), []string{fmt.Sprintf("dev/%d", i%100)}, 0, last,
						func(uint64, string, *broker.Message) error { n++; return nil })
					if err == nil && n != 10 {
						err = fmt.Errorf("read %d messages, want 10", n)
					}
					done(err)
				}()
			})
			b.ReportMetric(float64(b.N)/el.Seconds(), "reads/s")
		})
	}
}

// BenchmarkStoreDeliver: QoS 1 messages (64 bytes) stored by one node at
// a fixed rate, as the broker stores what its publishers send, three
// cores, sync always, every node reading the log (Deliver). Reports the
// latency of a Store (until a majority has it on disk: the PUBACK's
// wait) and from the Store to a node's reader handing it over (a
// subscriber's wait; every node's deliveries), p50 and p99, and how many
// of the three readers' consumers are on the log's leader.
func BenchmarkStoreDeliver(b *testing.B) {
	for _, rate := range []int{2000, 10000} {
		b.Run(fmt.Sprintf("replicas=3/rate=%d/size=64B", rate), func(b *testing.B) {
			nodes := startCluster(b, 3, nil)
			sent := make([]time.Time, b.N)
			acked := make([]time.Duration, b.N)
			got := make([][]time.Duration, len(nodes))
			var left sync.WaitGroup
			left.Add((1 + len(nodes)) * b.N)
			for i, nd := range nodes {
				got[i] = make([]time.Duration, b.N)
				nd.s.Deliver(func(_ uint64, _ string, m *broker.Message) {
					k := int(binary.BigEndian.Uint32(m.Payload))
					got[i][k] = time.Since(sent[k])
					left.Done()
				})
			}
			payload := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// Paced: message i leaves at start + i/rate.
				if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
					time.Sleep(d)
				}
				p := slices.Clone(payload)
				binary.BigEndian.PutUint32(p, uint32(i))
				sent[i] = time.Now()
				nodes[0].s.Store(&broker.Message{Topic: fmt.Sprintf("bench/%d", i%10), Payload: p, QoS: 1}, func(_ uint64, err error) {
					if err != nil {
						b.Error(err)
					}
					acked[i] = time.Since(sent[i])
					left.Done()
				})
			}
			left.Wait()
			b.StopTimer()
			var all []time.Duration
			for _, d := range got {
				all = append(all, d...)
			}
			onLeader := 0
			for _, nd := range nodes {
				if nd.s.rd.onLeader.Load() {
					onLeader++
				}
			}
			for _, l := range []struct {
				name string
				d    []time.Duration
			}{{"acked", acked}, {"delivered", all}} {
				slices.Sort(l.d)
				b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), l.name+"-p50-µs")
				b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), l.name+"-p99-µs")
			}
			b.ReportMetric(float64(onLeader), "readers-on-leader")
		})
	}
}
