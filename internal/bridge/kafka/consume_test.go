package kafka

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
)

// collector is an MQTT 5 subscriber that records every message it gets.
type collector struct {
	mu   sync.Mutex
	msgs []string // topic + " " + payload
}

func (c *collector) add(s string) {
	c.mu.Lock()
	c.msgs = append(c.msgs, s)
	c.mu.Unlock()
}

func (c *collector) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.msgs...)
}

func subscribe(t *testing.T, addr, filter string) *collector {
	t.Helper()
	col := &collector{}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "sub", Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			col.add(pr.Packet.Topic + " " + string(pr.Packet.Payload))
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	exp := uint32(3600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "sub", KeepAlive: 60,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); conn.Close() })
	return col
}

// gate passes the first n publishes to the broker and holds the rest until
// ctx ends: a consumer stopped with a batch half delivered.
type gate struct {
	pub  Publisher
	n    int64
	seen atomic.Int64
	wg   sync.WaitGroup
}

func (g *gate) Publish(ctx context.Context, m *broker.Message, done func(error)) {
	if g.seen.Add(1) > g.n {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			<-ctx.Done()
			done(ctx.Err())
		}()
		return
	}
	g.pub.Publish(ctx, m, done)
}

// The Kafka -> MQTT consumer stopped mid-batch and restarted: every
// command reaches the subscriber (at least once), first deliveries keep
// per-key order, and duplicates stay within one uncommitted poll.
func TestCommandsConsumerRestart(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(3, "cmds"))
	brokers := kc.ListenAddrs()[0]
	const devices, per = 10, 150
	produceCommands(t, brokers, devices, per)
	ctx := context.Background()

	addr, br := startBrokerB(t)
	col := subscribe(t, addr, "devices/+/commands")
	cfg := kafkaConfig(brokers)
	cfg.Commands = []config.KafkaCommand{{Name: "cmd", Topics: "cmds", MQTTTopic: "devices/${key}/commands", QoS: 1}}

	b1, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{pub: br, n: maxPoll + 37} // mid-way through the second batch
	if err := b1.Start(ctx, g); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first consumer reaches the gate", func() bool { return g.seen.Load() > g.n })
	b1.Close()
	g.wg.Wait()
	first := len(col.snapshot())

	b2 := newBridge(t, cfg)
	if err := b2.Start(ctx, br); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every command delivered", func() bool { return distinct(col.snapshot()) == devices*per })
	b2.Close()

	got := col.snapshot()
	dups := len(got) - devices*per
	t.Logf("first consumer delivered %d, total %d, duplicates %d; stats %+v then %+v",
		first, len(got), dups, b1.CommandStats()[0], b2.CommandStats()[0])
	if dups > maxPoll {
		t.Errorf("%d duplicates, over the one-poll bound %d", dups, maxPoll)
	}
	next := map[string]int{}
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			continue
		}
		seen[s] = true
		topic, v, _ := strings.Cut(s, " ")
		n, _ := strconv.Atoi(v)
		if n != next[topic] {
			t.Errorf("%s: first delivery of %d, expected %d", topic, n, next[topic])
		}
		next[topic] = n + 1
	}
}

// produceCommands writes per records for each of devices keys (dev-N,
// values 0..per-1) to topic cmds.
func produceCommands(t *testing.T, brokers string, devices, per int) {
	t.Helper()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var recs []*kgo.Record
	for i := range per {
		for d := range devices {
			recs = append(recs, &kgo.Record{Topic: "cmds", Key: fmt.Appendf(nil, "dev-%d", d), Value: []byte(strconv.Itoa(i))})
		}
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func distinct(ss []string) int {
	m := map[string]bool{}
	for _, s := range ss {
		m[s] = true
	}
	return len(m)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll
	}
}
