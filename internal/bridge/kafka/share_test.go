package kafka

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// runStandalone runs b as a standalone bridge reading from the broker at
// addr as clientID (the default when empty) until the test ends.
func runStandalone(t *testing.T, b *Bridge, addr, clientID string) {
	src := config.Default().Kafka.Source
	src.URL = "tcp://" + addr
	if clientID != "" {
		src.ClientID = clientID
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.RunStandalone(ctx, src) }()
	t.Cleanup(func() { cancel(); <-done })
}

// Two standalone bridges in one share group split the load: each produces
// a share, together every message exactly once (no failure, no duplicate).
func TestStandaloneSharedSplit(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(4, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	addr := startBroker(t)
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"})
	var bridges []*Bridge
	for i := range 2 {
		b := newBridge(t, cfg)
		b.log = newStderrLogger()
		bridges = append(bridges, b)
		runStandalone(t, b, addr, fmt.Sprintf("bridge-%d", i))
	}
	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	waitFor(t, "both bridges subscribed", func() bool {
		return bridges[0].sourceReady.Load() && bridges[1].sourceReady.Load()
	})
	for i := range n {
		if code, _, err := publish(context.Background(), pub, fmt.Sprintf("devices/dev-%d/telemetry", i%10), []byte(strconv.Itoa(i))); err != nil || code != 0 {
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

// In standalone mode the command routes publish into the MQTT broker
// through the bridge's session: every record reaches the subscriber in
// per-key order and the offsets are committed.
func TestStandaloneCommands(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(2, "cmds"))
	brokers := kc.ListenAddrs()[0]
	const devices, per = 3, 40
	produceCommands(t, brokers, devices, per)
	addr := startBroker(t)
	col := subscribe(t, addr, "devices/+/commands")
	cfg := kafkaConfig(brokers)
	cfg.Commands = []config.KafkaCommand{{Name: "cmd", Topics: "cmds", MQTTTopic: "devices/${key}/commands", QoS: 1}}
	b := newBridge(t, cfg)
	runStandalone(t, b, addr, "")
	waitFor(t, "commands delivered", func() bool { return distinct(col.snapshot()) == devices*per })
	waitFor(t, "offsets committed", func() bool { return b.CommandStats()[0].Committed > 0 })
	next := map[string]int{}
	for _, s := range col.snapshot() {
		topic, v, _ := strings.Cut(s, " ")
		n, _ := strconv.Atoi(v)
		if n != next[topic] {
			t.Errorf("%s: got %d, want %d", topic, n, next[topic])
		}
		next[topic] = n + 1
	}
}
