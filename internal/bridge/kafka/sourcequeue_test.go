package kafka

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// A real `culex serve` is the source, with a queue limit of 100 messages
// per session and the bridge's client id in mqtt.bridge_clients (limit
// 100,000). The standalone bridge (a child process) is killed with -9,
// 6,000 messages are published while it is away, and it is restarted:
// every message reaches Kafka, where the default limit would have dropped
// all but 100 of them (drop_new).
func TestStandaloneSourceBridgeQueueExempt(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in child")
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "culex.yaml")
	if err := os.WriteFile(cfgFile, []byte(`data_dir: ""
listeners: [{url: "tcp://127.0.0.1:0"}]
mqtt:
  max_queued_messages: 100
  bridge_clients: culex-bridge
  bridge_max_queued_messages: 100000
`), 0o600); err != nil {
		t.Fatal(err)
	}
	node := startCulex(t, cfgFile)
	kc := startKafka(t, kfake.SeedTopics(4, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"})
	cfg.Source = config.Default().Kafka.Source
	cfg.Source.URL = "tcp://" + node.addr

	child := startBridgeChild(t, cfg)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	const devices, per = 4, 1500
	pub, err := dialV5(t, node.addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	if err := <-publishSequence(pub, devices, per, &acked); err != nil {
		t.Fatal(err)
	}
	startBridgeChild(t, cfg)
	allDelivered(t, readWithinWindow(t, brokers, devices*per, cfg.Source.ReceiveMaximum), devices, per)
}
