package kafka

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
)

// device is an MQTT 5 client whose session outlives its connections; it
// records the payloads it gets on one topic, in order.
type device struct {
	id  string
	col *collector
	c   *paho.Client
}

// connectDevice connects id (clean start as given, session expiry 1 h)
// and subscribes it to devices/<id>/commands at QoS 1.
func connectDevice(t *testing.T, addr, id string, clean bool) *device {
	t.Helper()
	filter := ""
	if clean {
		filter = "devices/" + id + "/commands"
	}
	return connectSession(t, addr, id, filter, 3600, clean)
}

// connectSession connects id with the given session expiry (seconds) and,
// unless filter is empty, subscribes it to filter at QoS 1.
func connectSession(t *testing.T, addr, id, filter string, exp uint32, clean bool) *device {
	t.Helper()
	return connectSessionAck(t, addr, id, filter, exp, clean, true)
}

// connectSessionAck is connectSession whose client, unless ack, never
// acknowledges what it receives.
func connectSessionAck(t *testing.T, addr, id, filter string, exp uint32, clean, ack bool) *device {
	t.Helper()
	d := &device{id: id, col: &collector{}}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d.c = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, PacketTimeout: time.Minute, EnableManualAcknowledgment: !ack,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.col.add(string(pr.Packet.Payload))
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := d.c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 60,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &exp}})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("%s: connect: %v %v", id, ca, err)
	}
	if filter != "" {
		if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: filter, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { d.close() })
	return d
}

func (d *device) close() { _ = d.c.Disconnect(&paho.Disconnect{}) }

// inOrder fails unless got is exactly "0".."n-1".
func inOrder(t *testing.T, who string, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Errorf("%s got %d messages, want %d", who, len(got), n)
	}
	for i, s := range got {
		if s != strconv.Itoa(i) {
			t.Errorf("%s: message %d is %q, want %d (then %d more)", who, i, s, i, len(got)-i-1)
			return
		}
	}
}

// TestCommandsBackpressure: a real `culex serve` (max_queued_messages
// 100) and Kafka (kfake) in its own process. dev-0's persistent session is
// offline when 500 commands for it arrive on partition 0: exactly 100 are
// queued and committed, the partition stalls (a warning names the route,
// the partition and the client) while partition 1's commands for dev-1 keep
// flowing and committing. When dev-0 reconnects and drains its queue, the
// partition resumes: all 500 arrive in order, none twice, and everything
// is committed.
func TestCommandsBackpressure(t *testing.T) {
	if os.Getenv(kfakeChildEnv) != "" {
		t.Skip("in child")
	}
	dir := t.TempDir()
	_, brokers := startKfakeProc(t, 0, filepath.Join(dir, "kafka"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	if res, err := ka.CreateTopics(ctx, 2, 1, nil, "cmds"); err != nil || res.Error() != nil {
		t.Fatalf("create: %v %v", err, res.Error())
	}
	cfgFile := filepath.Join(dir, "culex.yaml")
	cfg := fmt.Sprintf(`data_dir: %q
listeners:
  - url: tcp://127.0.0.1:0
mqtt:
  max_queued_messages: 100
kafka:
  brokers: %q
  commands:
    - {name: cmd, topics: cmds, group: cmd-group, mqtt_topic: "devices/${key}/commands", qos: 1}
`, filepath.Join(dir, "data"), brokers)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	node := startCulex(t, cfgFile)

	dev0 := connectDevice(t, node.addr, "dev-0", true)
	dev0.close() // offline, its session keeps the subscription
	dev1 := connectDevice(t, node.addr, "dev-1", true)

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(dev string, part int32, from, to int) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: "cmds", Partition: part, Key: []byte(dev), Value: []byte(strconv.Itoa(i))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	committed := func() (p0, p1 int64) {
		os, err := ka.FetchOffsets(ctx, "cmd-group")
		if err != nil {
			return -1, -1
		}
		p0, p1 = -1, -1
		if o, ok := os.Lookup("cmds", 0); ok {
			p0 = o.At
		}
		if o, ok := os.Lookup("cmds", 1); ok {
			p1 = o.At
		}
		return p0, p1
	}
	produce("dev-0", 0, 0, 500)
	produce("dev-1", 1, 0, 200)

	stallRE := `msg="kafka command: partition stalled, record not committed" route=cmd topic=cmds partition=0 offset=100 client=dev-0`
	waitFor(t, "partition 0 stalled at 100 committed, partition 1 flowing", func() bool {
		p0, p1 := committed()
		return p0 == 100 && p1 == 200 && len(dev1.col.snapshot()) == 200 && strings.Contains(node.log.String(), stallRE)
	})
	// Partition 1 keeps flowing while partition 0 waits: a marker goes
	// through and is committed; partition 0 is still at 100.
	produce("dev-1", 1, 200, 201)
	waitFor(t, "the marker on partition 1", func() bool {
		_, p1 := committed()
		return p1 == 201 && len(dev1.col.snapshot()) == 201
	})
	if p0, _ := committed(); p0 != 100 {
		t.Fatalf("partition 0 committed up to %d while dev-0's queue holds 100", p0)
	}
	inOrder(t, "dev-1", dev1.col.snapshot(), 201)

	dev0 = connectDevice(t, node.addr, "dev-0", false)
	waitFor(t, "partition 0 resumed and committed to the end", func() bool {
		p0, _ := committed()
		return p0 == 500 && strings.Contains(node.log.String(), `msg="kafka command: partition resumed" route=cmd topic=cmds partition=0`)
	})
	// A last command on partition 0 arrives after every earlier one: no
	// duplicate can come later.
	produce("dev-0", 0, 500, 501)
	waitFor(t, "the marker for dev-0", func() bool {
		got := dev0.col.snapshot()
		return len(got) > 0 && got[len(got)-1] == "500"
	})
	inOrder(t, "dev-0", dev0.col.snapshot(), 501)
}

// TestCommandsBackpressureSessions: three sessions match partition 0's
// commands and one of them (offline, queue limit 10) fills up: the
// partition stalls with nothing routed for the refused record, so when
// the full session drains all three get every command once, in order.
// On partition 1 an offline session with a 2 s expiry fills up and
// expires: its stalled record is committed and counted Undeliverable, the
// rest of the partition flows.
func TestCommandsBackpressureSessions(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(2, "cmds"))
	brokers := kc.ListenAddrs()[0]
	mcfg := config.Default().MQTT
	mcfg.MaxQueuedMessages = 10
	addr, br := brokertest.Serve(t, broker.Options{Config: mcfg, AllowAnonymous: true})

	a := connectSession(t, addr, "a", "devices/all/commands", 3600, true)
	b := connectSession(t, addr, "b", "devices/all/commands", 3600, true)
	connectSession(t, addr, "c", "devices/all/commands", 3600, true).close()
	connectSession(t, addr, "d", "devices/x/commands", 2, true).close()

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := context.Background()
	produce := func(key string, part int32, from, to int) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: "cmds", Partition: part, Key: []byte(key), Value: []byte(strconv.Itoa(i))})
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("all", 0, 0, 30)
	produce("x", 1, 0, 15)

	cfg := kafkaConfig(brokers)
	cfg.Commands = []config.KafkaCommand{{Name: "cmd", Topics: "cmds", Group: "g", MQTTTopic: "devices/${key}/commands", QoS: 1}}
	bridge := newBridge(t, cfg)
	if err := bridge.Start(ctx, br); err != nil {
		t.Fatal(err)
	}
	ka := kadm.NewClient(prod)
	committed := func(part int32) int64 {
		os, err := ka.FetchOffsets(ctx, "g")
		if err != nil {
			return -1
		}
		o, ok := os.Lookup("cmds", part)
		if !ok {
			return -1
		}
		return o.At
	}
	waitFor(t, "partition 0 stalled on c at 10", func() bool {
		st := bridge.CommandStats()[0]
		return committed(0) == 10 && st.Stalled >= 1 && len(a.col.snapshot()) == 10 && len(b.col.snapshot()) == 10
	})
	waitFor(t, "d expired: partition 1 committed to the end", func() bool {
		st := bridge.CommandStats()[0]
		return committed(1) == 15 && st.Undeliverable == 1 && st.Stalled == 1
	})
	c := connectSession(t, addr, "c", "", 3600, false)
	waitFor(t, "partition 0 committed to the end", func() bool {
		return committed(0) == 30 && bridge.CommandStats()[0].Stalled == 0
	})
	produce("all", 0, 30, 31) // a marker after which nothing can come
	for _, d := range []*device{a, b, c} {
		waitFor(t, d.id+" gets the marker", func() bool {
			got := d.col.snapshot()
			return len(got) > 0 && got[len(got)-1] == "30"
		})
		inOrder(t, d.id, d.col.snapshot(), 31)
	}
	st := bridge.CommandStats()[0]
	if st.Stalls < 2 || st.Published != 31+10+5 {
		t.Errorf("stats %+v: want at least 2 stalls, 46 published", st)
	}
}

// cmdKafka is a one-partition command topic "cmds" with a producer and a
// reader of group "g"'s committed offset.
type cmdKafka struct {
	t       *testing.T
	brokers string
	prod    *kgo.Client
}

func newCmdKafka(t *testing.T) *cmdKafka {
	kc := startKafka(t, kfake.SeedTopics(1, "cmds"))
	k := &cmdKafka{t: t, brokers: kc.ListenAddrs()[0]}
	prod, err := kgo.NewClient(kgo.SeedBrokers(k.brokers), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	k.prod = prod
	return k
}

// produce writes one record per value, keyed key, to partition 0.
func (k *cmdKafka) produce(key string, values ...string) {
	k.t.Helper()
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: "cmds", Key: []byte(key), Value: []byte(v)})
	}
	if err := k.prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		k.t.Fatal(err)
	}
}

// committed is group g's committed offset of partition 0, or -1.
func (k *cmdKafka) committed() int64 {
	os, err := kadm.NewClient(k.prod).FetchOffsets(context.Background(), "g")
	if err != nil {
		return -1
	}
	o, ok := os.Lookup("cmds", 0)
	if !ok {
		return -1
	}
	return o.At
}

// A record the broker refuses for good (a topic past max_topic_levels,
// retain where retain_available is false) is counted Invalid and
// committed past: it does not stall its partition.
func TestCommandsPermanentRefusal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		retain bool
		bad    string // key of the record refused
	}{
		{"levels", false, "x/y/z"},
		{"retain", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newCmdKafka(t)
			mcfg := config.Default().MQTT
			mcfg.MaxTopicLevels = 3
			mcfg.RetainAvailable = !tc.retain
			addr, br := brokertest.Serve(t, broker.Options{Config: mcfg, AllowAnonymous: true})
			x := connectSession(t, addr, "x", "devices/x/commands", 3600, true)
			cfg := kafkaConfig(k.brokers)
			cfg.Commands = []config.KafkaCommand{{Name: "cmd", Topics: "cmds", Group: "g",
				MQTTTopic: "devices/${key}/commands", QoS: 1, Retain: tc.retain}}
			bridge := newBridge(t, cfg)
			if err := bridge.Start(context.Background(), br); err != nil {
				t.Fatal(err)
			}
			k.produce("x", "0")
			if tc.bad != "" {
				k.produce(tc.bad, "bad")
				k.produce("x", "1")
			}
			want := int64(3)
			if tc.retain {
				want = 1 // every record is refused
			}
			waitFor(t, "committed past the refused records", func() bool {
				st := bridge.CommandStats()[0]
				return k.committed() == want && st.Stalled == 0
			})
			st := bridge.CommandStats()[0]
			if tc.retain {
				if st.Invalid != 1 || st.Stalls != 0 {
					t.Errorf("stats %+v: want 1 invalid, no stall", st)
				}
				return
			}
			waitFor(t, "x gets both", func() bool { return len(x.col.snapshot()) == 2 })
			inOrder(t, "x", x.col.snapshot(), 2)
			if st.Invalid != 1 || st.Stalls != 0 || st.Published != 2 {
				t.Errorf("stats %+v: want 1 invalid, 2 published, no stall", st)
			}
		})
	}
}

// A device connected that never acknowledges its commands stalls its
// partition for max_stall at most: then the records its full session
// refuses go to the other sessions without its copy (a queue_full drop),
// are counted Undeliverable and committed, and the partition goes on.
// Its next refusals within max_stall are given up at once.
func TestCommandsMaxStall(t *testing.T) {
	k := newCmdKafka(t)
	mcfg := config.Default().MQTT
	mcfg.MaxQueuedMessages = 3
	mcfg.MaxInflight = 2 // dead holds 2 in flight, 3 queued
	addr, br := brokertest.Serve(t, broker.Options{Config: mcfg, AllowAnonymous: true})
	connectSessionAck(t, addr, "dead", "devices/dead/commands", 3600, true, false)
	ok := connectSession(t, addr, "ok", "devices/ok/commands", 3600, true)
	k.produce("dead", "0", "1", "2", "3", "4", "5", "6", "7")
	k.produce("ok", "0", "1", "2", "3")
	maxStall := 2 * time.Second
	cfg := kafkaConfig(k.brokers)
	cfg.Commands = []config.KafkaCommand{{Name: "cmd", Topics: "cmds", Group: "g",
		MQTTTopic: "devices/${key}/commands", QoS: 1, MaxStall: &maxStall}}
	bridge := newBridge(t, cfg)
	start := time.Now()
	if err := bridge.Start(context.Background(), br); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stalled at 5", func() bool { return k.committed() == 5 && bridge.CommandStats()[0].Stalled == 1 })
	waitFor(t, "committed to the end past max_stall", func() bool {
		return k.committed() == 12 && bridge.CommandStats()[0].Stalled == 0
	})
	if d := time.Since(start); d < maxStall {
		t.Errorf("went on after %v, before max_stall", d)
	}
	waitFor(t, "ok gets its commands", func() bool { return len(ok.col.snapshot()) == 4 })
	inOrder(t, "ok", ok.col.snapshot(), 4)
	st := bridge.CommandStats()[0]
	if st.Undeliverable != 3 || st.Published != 12 {
		t.Errorf("stats %+v: want 3 undeliverable, 12 published", st)
	}
	if d := br.Stats().Drops["queue_full"]; d != 3 {
		t.Errorf("queue_full drops %d, want 3", d)
	}
	k.produce("dead", "8")
	k.produce("ok", "4") // a marker
	waitFor(t, "dead's next command given up at once", func() bool {
		return k.committed() == 14 && len(ok.col.snapshot()) == 5
	})
	if st := bridge.CommandStats()[0]; st.Undeliverable != 4 || st.Stalls != 1 {
		t.Errorf("stats %+v: want 4 undeliverable, still 1 stall", st)
	}
}
