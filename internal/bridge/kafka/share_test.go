package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// Two standalone bridges in one share group split the load: each produces
// a share, together every message exactly once (no failure, no duplicate).
func TestStandaloneSharedSplit(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(4, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	addr := startBroker(t)
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bridges []*Bridge
	for i := range 2 {
		b := newBridge(t, cfg)
		b.log = newStderrLogger()
		bridges = append(bridges, b)
		src := config.Default().Kafka.Source
		src.URL, src.ClientID = "tcp://"+addr, fmt.Sprintf("bridge-%d", i)
		wg.Add(1)
		go func() { defer wg.Done(); _ = b.RunStandalone(ctx, src) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	waitFor(t, "both bridges subscribed", func() bool {
		return bridges[0].sourceReady.Load() && bridges[1].sourceReady.Load()
	})
	for i := range n {
		if code, _, err := publish(ctx, pub, fmt.Sprintf("devices/dev-%d/telemetry", i%10), []byte(strconv.Itoa(i))); err != nil || code != 0 {
			t.Fatalf("publish: %v 0x%02x", err, code)
		}
	}
	waitFor(t, "all produced", func() bool { return bridges[0].Stats()[0].Produced+bridges[1].Stats()[0].Produced == n })
	a, b := bridges[0].Stats()[0].Produced, bridges[1].Stats()[0].Produced
	if a == 0 || b == 0 {
		t.Errorf("load not split: %d and %d", a, b)
	}
	if recs := kcatRead(t, brokers, "telemetry", n); len(recs) != n {
		t.Errorf("kcat read %d records, want %d", len(recs), n)
	}
	t.Logf("split %d / %d", a, b)
}
