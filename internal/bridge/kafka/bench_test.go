package kafka

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/bench"
	"github.com/culexmq/culex/internal/config"
)

var benchRun = flag.Duration("kafka.benchrun", time.Second, "publishing time of one throughput benchmark iteration")

// BenchmarkPublishToKafka measures QoS 1 publishes acknowledged after the
// Kafka ack (ack mode kafka) through a real broker into kfake, driven by
// the `culex bench pub` engine. Each iteration publishes for -kafka.benchrun;
// msg/s and the publish-to-PUBACK latency percentiles are reported.
//
//	go test -run '^$' -bench PublishToKafka -benchtime 1x -kafka.benchrun 10s ./internal/bridge/kafka/
func BenchmarkPublishToKafka(b *testing.B) {
	const clients = 16
	for _, c := range []struct {
		ack  string
		rate int // 0: as fast as acks allow
	}{{"kafka", 0}, {"kafka", 50000}, {"spool", 0}} {
		ack, rate := c.ack, c.rate
		b.Run(fmt.Sprintf("qos=1/ack=%s/clients=%d/size=100B/rate=%d", ack, clients, rate), func(b *testing.B) {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(8, "telemetry"))
			if err != nil {
				b.Fatal(err)
			}
			defer kc.Close()
			cfg := kafkaConfig(kc.ListenAddrs()[0], config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry", Ack: ack})
			cfg.Spool = config.KafkaSpool{Dir: b.TempDir(), MaxBytes: 1 << 30, SegmentBytes: 64 << 20}
			br, err := New(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			addr, _ := startBrokerB(b, br.Interceptor())
			b.ReportAllocs()
			b.ResetTimer()
			var got, p50, p99 float64
			var probes int
			for range b.N {
				probe := startProbe(b, addr)
				args := []string{"-url", "tcp://" + addr, "-c", fmt.Sprint(clients),
					"-qos", "1", "-inflight", "256", "-size", "100", "-topic", "devices/%i/telemetry",
					"-duration", benchRun.String(), "-quiet"}
				if rate > 0 { // each client paced at rate/clients
					args = append(args, "-interval", (time.Second * clients / time.Duration(rate)).String())
				}
				bc, _, err := bench.ParseFlags("pub", args, io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				s, err := bench.Run(context.Background(), *bc, io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Errors) > 0 || s.Acked != s.Published {
					b.Fatalf("published %d acked %d errors %v", s.Published, s.Acked, s.Errors)
				}
				lat := probe()
				probes = len(lat)
				got, p50, p99 = s.PubRate, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
				if testing.Verbose() {
					s.WriteText(os.Stderr)
				}
			}
			b.StopTimer()
			deadline := time.Now().Add(waitTimeout)
			// Poll: the probe's last publish may still be in flight, or
			// (ack: spool) appended and not yet written to the spool.
			st := br.Stats()[0]
			for st.Produced+st.Failed < st.Matched && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
				st = br.Stats()[0]
			}
			if st.Failed != 0 || st.Produced != st.Matched {
				b.Fatalf("stats %+v", st)
			}
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "bridge: matched %d produced %d; probe: %d sequential publishes, p50 %.2fms p99 %.2fms\n",
					st.Matched, st.Produced, probes, p50, p99)
			}
			b.ReportMetric(got, "msg/s")
			b.ReportMetric(p50, "p50-ms")
			b.ReportMetric(p99, "p99-ms")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// startProbe publishes QoS 1 messages one at a time on its own connection
// while the load runs, timing each PUBLISH to its PUBACK; stop returns the
// sorted durations.
func startProbe(b *testing.B, addr string) (stop func() []time.Duration) {
	c, err := dialV5(b, addr, "probe")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []time.Duration)
	go func() {
		var lat []time.Duration
		for ctx.Err() == nil {
			start := time.Now()
			if code, _, err := publish(ctx, c, "devices/probe/telemetry", []byte("p")); err != nil || code != 0 {
				break
			}
			lat = append(lat, time.Since(start))
		}
		done <- lat
	}()
	return func() []time.Duration {
		cancel()
		lat := <-done
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("probe got no acks")
		}
		return lat
	}
}
