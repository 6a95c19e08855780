package server

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

func kafkaNodeConfig(t *testing.T, brokers string) config.Config {
	cfg := testConfig(t)
	cfg.Kafka.Brokers = brokers
	cfg.Kafka.Routes = []config.KafkaRoute{{Name: "telemetry", Filter: "devices/+/telemetry", Topic: "telemetry"}}
	return cfg
}

func startKafka(t *testing.T, opts ...kfake.Opt) string {
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// A QoS 1 publish on a Kafka route is acknowledged once Kafka holds it,
// keyed by the client id.
func TestKafkaRouteThroughNode(t *testing.T) {
	brokers := startKafka(t, kfake.SeedTopics(1, "telemetry"))
	srv, err := New(kafkaNodeConfig(t, brokers), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.URL("tcp"), "tcp://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	for _, p := range []packet.Packet{
		&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, CleanStart: true, ClientID: "dev-7"},
		&packet.Publish{QoS: 1, PacketID: 1, Topic: "devices/dev-7/telemetry", Payload: []byte("21.5")},
	} {
		b, _ := p.Encode(nil, packet.V5)
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	for {
		p, err := packet.ReadPacket(conn, packet.V5, 0)
		if err != nil {
			t.Fatal(err)
		}
		if a, ok := p.(*packet.Ack); ok {
			if a.Kind != packet.PUBACK || a.ReasonCode != 0 {
				t.Fatalf("got %v 0x%02x, want PUBACK 0x00", a.Kind, a.ReasonCode)
			}
			break
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("telemetry"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fetches := cl.PollRecords(ctx, 1)
	if err := fetches.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fetches.Records()
	if len(recs) != 1 || string(recs[0].Key) != "dev-7" || string(recs[0].Value) != "21.5" {
		t.Fatalf("records %+v", recs)
	}
}

// A missing topic is a configuration error: the node does not start.
func TestKafkaMissingTopicStopsStart(t *testing.T) {
	_, err := New(kafkaNodeConfig(t, startKafka(t)), nil)
	if err == nil || !strings.Contains(err.Error(), "telemetry") {
		t.Fatalf("got %v, want an error naming the missing topic", err)
	}
}

// Kafka being down at start is an outage, not a misconfiguration: MQTT is
// served and publishes on Kafka routes wait.
func TestKafkaUnreachableStillStarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now: connection refused
	srv, err := New(kafkaNodeConfig(t, addr), nil)
	if err != nil {
		t.Fatalf("node did not start with Kafka down: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown(context.Background())
}
