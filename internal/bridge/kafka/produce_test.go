package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

// A QoS 1 publish that matches a kafka-mode route is acknowledged after
// Kafka acked it: once the PUBACK arrives, kcat can read the record.
func TestPublishAckedAfterKafka(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(3, "telemetry", "all"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers,
		config.KafkaRoute{Name: "tele", Filter: "devices/+/telemetry", Topic: "telemetry", Headers: true},
		config.KafkaRoute{Name: "all", Filter: "devices/#", Topic: "all", Key: "${2}"},
	))
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10 {
		code, reason, err := publish(ctx, c, "devices/dev-1/telemetry", fmt.Appendf(nil, "m%d", i))
		if err != nil || code != 0 {
			t.Fatalf("publish %d: %v 0x%02x %s", i, err, code, reason)
		}
		// Acknowledged means in Kafka: both routes' records are readable now.
		if got := b.Stats()[0].Produced + b.Stats()[1].Produced; got != int64(2*(i+1)) {
			t.Fatalf("after PUBACK %d: %d records produced, want %d", i, got, 2*(i+1))
		}
	}
	recs := kcatRead(t, brokers, "telemetry", 10)
	if len(recs) != 10 {
		t.Fatalf("kcat read %d records", len(recs))
	}
	for i, r := range recs {
		// One key, so one partition, in order.
		if r.Key != "dev-1" || r.Value != fmt.Sprintf("m%d", i) || r.Partition != recs[0].Partition {
			t.Errorf("record %d: %+v", i, r)
		}
		if !strings.Contains(r.Headers, "mqtt.topic=devices/dev-1/telemetry") || !strings.Contains(r.Headers, "mqtt.qos=1") {
			t.Errorf("record %d headers %q", i, r.Headers)
		}
	}
	if all := kcatRead(t, brokers, "all", 10); len(all) != 10 || all[0].Key != "dev-1" {
		t.Errorf("route all: %+v", all)
	}
	s := b.Stats()[0]
	if s.Matched != 10 || s.Produced != 10 || s.Failed != 0 || s.InFlight != 0 || s.AckedNotInKafka != 0 {
		t.Errorf("stats %+v", s)
	}
	var n int64
	for _, x := range s.Latency {
		n += x
	}
	if n != 10 {
		t.Errorf("latency histogram counts %d", n)
	}
}

// A record Kafka refuses fails the publish: a v5 client gets PUBACK 0x80
// with the cause in the reason string, and nothing is acknowledged.
func TestPublishFailsWithReason(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "t"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers,
		config.KafkaRoute{Filter: "a/+", Topic: "t.${2}"}, // t.missing does not exist
	))
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	code, reason, err := publish(context.Background(), c, "a/missing", []byte("x"))
	if err != nil || code != 0x80 || !strings.Contains(reason, "kafka route a/+") {
		t.Fatalf("got %v 0x%02x %q, want 0x80 with a reason", err, code, reason)
	}
	// A topic that cannot be a Kafka topic name is refused at once.
	code, reason, err = publish(context.Background(), c, "a/b c", []byte("x"))
	if err != nil || code != 0x90 {
		t.Fatalf("got %v 0x%02x %q, want 0x90", err, code, reason)
	}
}

// Check refuses to start with a missing literal topic unless told to create it.
func TestCheckTopics(t *testing.T) {
	kc := startKafka(t)
	brokers := kc.ListenAddrs()[0]
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "#", Topic: "absent"})
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "absent") || !strings.Contains(err.Error(), "create_topics") {
		t.Fatalf("check: %v", err)
	}
	cfg.CreateTopics, cfg.Partitions = true, 4
	b2 := newBridge(t, cfg)
	_ = b2
	if recs := kcatRead(t, brokers, "absent", 0); len(recs) != 0 {
		t.Errorf("new topic has records: %v", recs)
	}
}

// A kafka-mode route whose topic is deleted and recreated: the producer's
// stale topic id fails a publish or two (0x80), then it learns the new
// topic and publishes are acknowledged again.
func TestPublishAfterTopicRecreated(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(2, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry"}))
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev-0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if code, reason, err := publish(ctx, c, "devices/dev-0/telemetry", []byte("0")); err != nil || code != 0 {
		t.Fatalf("before: %v 0x%02x %s", err, code, reason)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	if res, err := ka.DeleteTopics(ctx, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("delete: %v %v", err, res.Error())
	}
	if res, err := ka.CreateTopics(ctx, 2, 1, nil, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("create: %v %v", err, res.Error())
	}
	waitFor(t, "a publish acknowledged after the recreation", func() bool {
		code, _, err := publish(ctx, c, "devices/dev-0/telemetry", []byte("1"))
		return err == nil && code == 0
	})
	if recs := readAll(t, brokers, "telemetry", 1, waitTimeout); len(recs) != 1 || string(recs[0].Value) != "1" {
		t.Fatalf("recreated topic holds %v", recs)
	}
}
