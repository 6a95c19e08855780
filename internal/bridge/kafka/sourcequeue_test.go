package kafka

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
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

// logBuffer is a log destination safe for concurrent writes.
type logBuffer struct{ lockedLog }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.add(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// culex bridge asks a Culex source for its session's queue limits: it
// warns when it has only a device's limit, and logs the bridge limit at
// info when mqtt.bridge_clients names it. Mosquitto does not answer: no
// line at all.
func TestStandaloneLogsSourceQueueLimit(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "telemetry"))
	mosquitto := net.JoinHostPort("127.0.0.1", strconv.Itoa(brokertest.Mosquitto(t, "")))
	for _, tc := range []struct {
		name, bridges, mosquitto, want string
	}{
		{name: "device limit", want: `level=WARN msg="kafka bridge: the source keeps at most a device's queue`},
		{name: "bridge client", bridges: "culex-bridge", want: `level=INFO msg="kafka bridge: the source's queue for this bridge`},
		{name: "mosquitto", mosquitto: mosquitto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.mosquitto
			if addr == "" {
				mc := config.Default().MQTT
				mc.BridgeClients = tc.bridges
				addr, _ = brokertest.Serve(t, broker.Options{Config: mc, AllowAnonymous: true})
			}
			b := newBridge(t, kafkaConfig(kc.ListenAddrs()[0], config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"}))
			var logs logBuffer
			b.log = slog.New(slog.NewTextHandler(&logs, nil))
			runStandalone(t, b, addr, "")
			waitFor(t, "bridge subscribed", b.sourceReady.Load)
			got := logs.String()
			if !strings.Contains(got, "kafka bridge: subscribed") {
				t.Fatalf("no subscribed line in\n%s", got)
			}
			limits := strings.Contains(got, "max_queued_messages=")
			if tc.want == "" && limits || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("log:\n%s\nwant %q", got, tc.want)
			}
		})
	}
}
