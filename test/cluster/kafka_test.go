package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaExtra is every node's Kafka bridge: device telemetry to Kafka,
// commands from Kafka to devices/<key>/commands.
const kafkaExtra = `kafka:
  brokers: %q
  produce_timeout: 10s
  group_session_timeout: 6s
  routes:
    - {name: telemetry, filter: devices/+/telemetry, topic: telemetry, ack: kafka}
  commands:
    - {name: commands, topics: device-commands, mqtt_topic: "devices/${key}/commands", qos: 1}
`

// TestKafkaBridgeAcrossNodes: three nodes with the same Kafka bridge
// against one Kafka (kfake, in the test's process). Their command
// consumers form one consumer group with three distinct static members;
// commands produced to Kafka reach devices on nodes c1 and c2, whichever
// node consumes the partition, each once and in order; telemetry a device
// on c0 publishes, forwarded to subscribers on c1 and c2, lands in Kafka
// once, produced by c0 only.
func TestKafkaBridgeAcrossNodes(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0),
		kfake.SeedTopics(1, "telemetry"), kfake.SeedTopics(6, "device-commands"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	brokers := kc.ListenAddrs()[0]
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: fmt.Sprintf(kafkaExtra, brokers)})

	// One group, three members with distinct instance ids.
	ids := map[string]bool{}
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(n.DataDir, config.GroupInstanceIDFile))
		if err != nil {
			t.Fatal(err)
		}
		ids[strings.TrimSpace(string(b))] = true
	}
	if len(ids) != 3 {
		t.Fatalf("group instance ids %v: want 3 distinct", ids)
	}
	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.Close)
	adm := kadm.NewClient(kcl)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitTimeout)
	defer cancel()
	for {
		gs, err := adm.DescribeGroups(ctx, "culex-commands")
		g := gs["culex-commands"]
		var members []string
		for _, m := range g.Members {
			if m.InstanceID != nil {
				members = append(members, *m.InstanceID)
			}
		}
		if err == nil && g.State == "Stable" && len(members) == 3 && !slices.ContainsFunc(members, func(id string) bool { return !ids[id] }) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("group culex-commands: %+v (%v), want 3 stable members %v", g, err, ids)
		}
		time.Sleep(50 * time.Millisecond) // poll
	}

	// Commands: devices on c1 and c2.
	devB, devC := dialV5(t, c.Nodes[1].MQTT(), "dev-b"), dialV5(t, c.Nodes[2].MQTT(), "dev-c")
	devB.sub("devices/dev-b/commands", 1, 0, false)
	devC.sub("devices/dev-c/commands", 1, 0, false)
	const n = 20
	for i := range n {
		for _, key := range []string{"dev-b", "dev-c"} {
			r := &kgo.Record{Topic: "device-commands", Key: []byte(key), Value: fmt.Appendf(nil, "%s-%d", key, i)}
			if err := kcl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []struct {
		key string
		dev *v5
	}{{"dev-b", devB}, {"dev-c", devC}} {
		for i := range n {
			select {
			case m := <-d.dev.msgs:
				if want := fmt.Sprintf("%s-%d", d.key, i); m.Payload != want || m.Topic != "devices/"+d.key+"/commands" {
					t.Fatalf("%s got %s %q, want %q (each command once, in order)", d.key, m.Topic, m.Payload, want)
				}
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d commands", d.key, i, n)
			}
		}
	}

	// Telemetry: a device on c0, watched by subscribers on c1 and c2.
	watchB, watchC := dialV5(t, c.Nodes[1].MQTT(), "watch-b"), dialV5(t, c.Nodes[2].MQTT(), "watch-c")
	watchB.sub("devices/+/telemetry", 1, 0, false)
	watchC.sub("devices/+/telemetry", 1, 0, false)
	devA := dialV5(t, c.Nodes[0].MQTT(), "dev-a")
	for i := range n {
		if _, err := devA.pub("devices/dev-a/telemetry", 1, fmt.Sprintf("t-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := devA.pub("devices/dev-a/telemetry", 1, "end-a"); err != nil {
		t.Fatal(err)
	}
	// Once c1 and c2 have had every message of dev-a, their own devices'
	// markers follow in their producers: a copy c1 or c2 produced would
	// be in the (one-partition) topic before its marker.
	recvUntil(t, "watch-b", watchB.msgs, "end-a")
	recvUntil(t, "watch-c", watchC.msgs, "end-a")
	if _, err := devB.pub("devices/dev-b/telemetry", 1, "end-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := devC.pub("devices/dev-c/telemetry", 1, "end-c"); err != nil {
		t.Fatal(err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("telemetry"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cons.Close)
	seen := map[string]int{}
	for seen["end-a"] == 0 || seen["end-b"] == 0 || seen["end-c"] == 0 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("telemetry in Kafka: %v, want the three markers", seen)
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++ })
	}
	for i := range n {
		if got := seen[fmt.Sprintf("t-%d", i)]; got != 1 {
			t.Errorf("t-%d is %d times in Kafka, want once", i, got)
		}
	}
	if seen["end-a"] != 1 {
		t.Errorf("end-a is %d times in Kafka, want once", seen["end-a"])
	}
}
