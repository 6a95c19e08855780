package kafka

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"

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
