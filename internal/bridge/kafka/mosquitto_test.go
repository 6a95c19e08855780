package kafka

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
)

// The standalone bridge reads from Mosquitto (a broker we did not write)
// through a shared subscription and acknowledges after Kafka: every
// message arrives, in per-topic order.
func TestStandaloneFromMosquitto(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(brokertest.Mosquitto(t, "max_queued_messages 100000\n")))
	kc := startKafka(t, kfake.SeedTopics(2, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"}))
	runStandalone(t, b, addr, "")
	waitFor(t, "bridge subscribed", b.sourceReady.Load)

	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	const devices, per = 4, 100
	for i := range per {
		for d := range devices {
			if code, _, err := publish(context.Background(), pub, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(i))); err != nil || code >= 0x80 {
				t.Fatalf("publish: %v 0x%02x", err, code)
			}
		}
	}
	perKey, total := readDistinct(t, brokers, "telemetry", devices*per)
	if total != devices*per {
		t.Errorf("%d records, want %d", total, devices*per)
	}
	for d := range devices {
		key := fmt.Sprintf("devices/dev-%d/telemetry", d)
		got := perKey[key]
		for i, v := range got {
			if v != i {
				t.Fatalf("%s: record %d is %d", key, i, v)
			}
		}
		if len(got) != per {
			t.Errorf("%s: %d records", key, len(got))
		}
	}
}

// The standalone bridge (a child process) reading from Mosquitto, which
// sends more unacknowledged messages than the bridge's Receive Maximum
// when it has a backlog [MQTT-3.3.4-9], is killed with -9 while draining
// 20,000 queued messages and restarted: every message reaches Kafka and
// duplicates stay within receive_maximum, because the excess Mosquitto
// sends waits in the bridge unproduced.
func TestStandaloneFromMosquittoKillBound(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in child")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(brokertest.Mosquitto(t, "max_queued_messages 1000000\n")))
	kc := startKafka(t, kfake.SeedTopics(4, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"})
	cfg.Source = config.Default().Kafka.Source
	cfg.Source.URL = "tcp://" + addr
	cfg.Source.ReceiveMaximum = 100
	kill := func(c *exec.Cmd) {
		if err := c.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.Wait()
	}
	kill(startBridgeChild(t, cfg)) // the session now exists and queues

	const devices, per = 4, 5000
	errs := make(chan error, devices)
	for d := range devices {
		pub, err := dialV5(t, addr, fmt.Sprintf("publisher-%d", d))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for i := range per {
				if code, _, err := publish(context.Background(), pub, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(i))); err != nil || code != 0 {
					errs <- fmt.Errorf("publish: %v 0x%02x", err, code)
					return
				}
			}
			errs <- nil
		}()
	}
	for range devices {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	child := startBridgeChild(t, cfg)
	waitRecords(t, brokers, "telemetry", devices*per/4)
	kill(child)
	startBridgeChild(t, cfg)

	allDelivered(t, readWithinWindow(t, brokers, devices*per, cfg.Source.ReceiveMaximum), devices, per)
}

// waitRecords returns once topic holds at least n records.
func waitRecords(t *testing.T, brokers, topic string, n int) {
	t.Helper()
	cl := readFromStart(t, brokers, topic)
	defer cl.Close()
	got := 0
	deadline := time.Now().Add(waitTimeout)
	for got < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		got += cl.PollFetches(ctx).NumRecords()
		cancel()
	}
	if got < n {
		t.Fatalf("%d records in %s, want %d", got, topic, n)
	}
}

// readWithinWindow reads the telemetry topic until it holds the msgs
// distinct messages and checks that the duplicates stay within the
// in-flight window (receive_maximum); it returns the values per key.
func readWithinWindow(t *testing.T, brokers string, msgs int, window uint16) map[string][]int {
	t.Helper()
	perKey, total := readDistinct(t, brokers, "telemetry", msgs)
	dups := total - msgs
	t.Logf("%d records for %d messages: %d duplicates", total, msgs, dups)
	if dups > int(window) {
		t.Errorf("%d duplicates, over the in-flight window (receive_maximum) %d", dups, window)
	}
	return perKey
}

// allDelivered checks that each of devices topics devices/dev-N/telemetry
// got every value 0 to per-1 at least once.
func allDelivered(t *testing.T, perKey map[string][]int, devices, per int) {
	t.Helper()
	for d := range devices {
		key := fmt.Sprintf("devices/dev-%d/telemetry", d)
		seen := map[int]bool{}
		for _, v := range perKey[key] {
			seen[v] = true
		}
		if len(seen) != per {
			t.Errorf("%s: %d of %d delivered", key, len(seen), per)
		}
	}
}
