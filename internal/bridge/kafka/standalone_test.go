package kafka

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

const childEnv = "CULEX_TEST_BRIDGE_CHILD"

// TestStandaloneChild is the standalone bridge process of
// TestStandaloneKillRestart; it runs only when the parent sets childEnv.
func TestStandaloneChild(t *testing.T) {
	cfg := childConfig(t, childEnv)
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.log = newStderrLogger()
	defer b.Close()
	// Runs until the parent kills it.
	if err := b.RunStandalone(context.Background(), cfg.Source); err != nil {
		t.Fatal(err)
	}
}

// startBridgeChild runs the standalone bridge in a child process and waits
// until it has subscribed.
func startBridgeChild(t *testing.T, cfg config.Kafka) *exec.Cmd {
	t.Helper()
	cmd, _ := startConfigChild(t, "TestStandaloneChild", childEnv, cfg, "kafka bridge: subscribed")
	return cmd
}

// The standalone bridge killed with -9 mid-stream and restarted: the
// broker keeps its session, redelivers what it had not acknowledged, and
// every message reaches Kafka; duplicates stay within the in-flight window
// (Receive Maximum) and first deliveries keep per-key order.
func TestStandaloneKillRestart(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in child")
	}
	brokers, addr, cfg := standaloneSetup(t)
	child := startBridgeChild(t, cfg)

	const devices, per = 4, 1500
	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	done := publishSequence(pub, devices, per, &sent)
	waitFor(t, "a third published", func() bool { return sent.Load() >= devices*per/3 })
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	startBridgeChild(t, cfg)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	perKey := readWithinWindow(t, brokers, devices*per, cfg.Source.ReceiveMaximum)
	for d := range devices {
		key := fmt.Sprintf("devices/dev-%d/telemetry", d) // standalone default key: the MQTT topic
		seen, next := map[int]bool{}, 0
		for _, v := range perKey[key] {
			if seen[v] {
				continue
			}
			seen[v] = true
			if v != next {
				t.Errorf("%s: first delivery of %d, expected %d", key, v, next)
			}
			next = v + 1
		}
		if len(seen) != per {
			t.Errorf("%s: %d of %d delivered", key, len(seen), per)
		}
	}
}

// standaloneSetup starts Kafka with a four-partition telemetry topic and a
// broker (any MQTT 5 broker; here Culex without the bridge), and returns a
// standalone bridge config from that broker's devices/+/telemetry to Kafka,
// with Receive Maximum 100.
func standaloneSetup(t *testing.T) (brokers, addr string, cfg config.Kafka) {
	t.Helper()
	kc := startKafka(t, kfake.SeedTopics(4, "telemetry"))
	brokers = kc.ListenAddrs()[0]
	addr = startBroker(t)
	cfg = kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"})
	cfg.Source = config.Default().Kafka.Source
	cfg.Source.URL = "tcp://" + addr
	cfg.Source.ReceiveMaximum = 100
	return brokers, addr, cfg
}

// publishSequence publishes 0 to per-1 at QoS 1 to each of devices topics
// devices/dev-N/telemetry from a goroutine, counting acknowledged publishes
// in acked. The channel gets the first failure, or nil at the end.
func publishSequence(pub *paho.Client, devices, per int, acked *atomic.Int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := range per {
			for d := range devices {
				if code, _, err := publish(ctx, pub, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(i))); err != nil || code != 0 {
					done <- fmt.Errorf("publish: %v 0x%02x", err, code)
					return
				}
				acked.Add(1)
			}
		}
		done <- nil
	}()
	return done
}

// readDistinct consumes topic until want distinct (key, value) pairs were
// seen or the deadline passes, then reads what is left; it returns the
// values per key in partition order and the record count.
func readDistinct(t *testing.T, brokers, topic string, want int) (map[string][]int, int) {
	t.Helper()
	cl := readFromStart(t, brokers, topic)
	defer cl.Close()
	perKey := map[string][]int{}
	seen := map[string]bool{}
	total := 0
	deadline := time.Now().Add(waitTimeout)
	for len(seen) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			v, _ := strconv.Atoi(string(r.Value))
			perKey[string(r.Key)] = append(perKey[string(r.Key)], v)
			seen[string(r.Key)+"/"+string(r.Value)] = true
			total++
		})
	}
	return perKey, total
}

// Kafka hung for several produce_timeouts, then back: the standalone
// bridge keeps its source session (the publishes wait for Kafka rather
// than expire), so the source resends nothing and each message reaches
// Kafka once; duplicates stay within receive_maximum, not multiplied by
// the number of timeouts the outage lasted.
func TestStandaloneOutageNoDuplicates(t *testing.T) {
	hl, kc := startHungKafka(t, kfake.SeedTopics(1, "telemetry"))
	outageNoDuplicates(t, hl, kc.ListenAddrs()[0], startBroker(t), 2000)
}

// outageNoDuplicates runs a standalone bridge (receive_maximum 100,
// produce_timeout 1 s) from the broker at addr, subscribes it, stops it,
// queues msgs messages at the broker, hangs Kafka and starts the bridge
// again; after ten producer redials (several produce_timeouts) Kafka
// resumes: every message is in Kafka, with duplicates within
// receive_maximum.
func outageNoDuplicates(t *testing.T, hl *hangListener, brokers, addr string, msgs int) {
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"})
	cfg.ProduceTimeout = time.Second
	b := newBridge(t, cfg)
	src := config.Default().Kafka.Source
	src.URL = "tcp://" + addr
	src.ReceiveMaximum = 100
	run := func() func() {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = b.RunStandalone(ctx, src) }()
		waitFor(t, "bridge subscribed", b.sourceReady.Load)
		return func() { cancel(); <-done }
	}
	run()() // the session now exists at the broker and queues

	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	if err := <-publishSequence(pub, 1, msgs, &acked); err != nil {
		t.Fatal(err)
	}
	hl.hang()
	t.Cleanup(run())
	// The producer's requests time out and it redials (its request timeout
	// is 1 s): ten dials are several produce_timeouts and keepalives.
	a0 := hl.accepts.Load()
	waitFor(t, "ten producer redials while hung", func() bool { return hl.accepts.Load() >= a0+10 })
	hl.resume()
	pctx, pcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer pcancel()
	if code, _, err := publish(pctx, pub, "devices/dev-0/telemetry", []byte(strconv.Itoa(msgs))); err != nil || code != 0 {
		t.Fatalf("marker publish: %v 0x%02x", err, code)
	}
	perKey := readWithinWindow(t, brokers, msgs+1, src.ReceiveMaximum)
	allDelivered(t, map[string][]int{"devices/dev-0/telemetry": perKey["devices/dev-0/telemetry"]}, 1, msgs+1)
	// Everything the bridge produced is in: the marker came after every
	// message (and every resend) in the source's order, and nothing is in
	// flight. The producer's count is the number of records in Kafka.
	waitFor(t, "nothing in flight", func() bool { return b.Stats()[0].InFlight == 0 })
	if p := int(b.Stats()[0].Produced); p-(msgs+1) > int(src.ReceiveMaximum) {
		t.Errorf("%d records produced for %d messages: %d duplicates, over receive_maximum %d", p, msgs+1, p-(msgs+1), src.ReceiveMaximum)
	}
}
