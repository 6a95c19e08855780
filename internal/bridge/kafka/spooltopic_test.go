package kafka

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

// A spool-mode publish is acknowledged before Kafka sees it, so one whose
// templated topic Kafka says does not exist is refused, not spooled: v5
// gets 0x80 naming the topic, 3.1.1 no PUBACK. An existing templated
// topic is accepted and drained.
func TestSpoolRefusesMissingTopic(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "t.dev-0"))
	brokers := kc.ListenAddrs()[0]
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "t.${2}", Ack: "spool"})
	cfg.Spool = config.KafkaSpool{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 16 << 10}
	b := newBridge(t, cfg)
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev-0")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if code, reason, err := publish(ctx, c, "devices/dev-0/telemetry", []byte("0")); err != nil || code != 0 {
		t.Fatalf("existing topic: %v 0x%02x %s", err, code, reason)
	}
	for range 2 { // the second answer comes from the cache
		code, reason, err := publish(ctx, c, "devices/dev-9/telemetry", []byte("1"))
		if err != nil || code != 0x80 || !strings.Contains(reason, `"t.dev-9"`) || !strings.Contains(reason, "does not exist") {
			t.Fatalf("missing topic: %v 0x%02x %q", err, code, reason)
		}
	}
	if recs := readAll(t, brokers, "t.dev-0", 1, waitTimeout); len(recs) != 1 || string(recs[0].Value) != "0" {
		t.Fatalf("t.dev-0: %v", recs)
	}
	waitFor(t, "spool drained", func() bool { return b.SpoolStats().Entries == 0 })

	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("v3").SetProtocolVersion(4).
		SetAutoReconnect(false).SetCleanSession(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return net.DialTimeout("tcp", u.Host, 5*time.Second)
		})
	c3 := mqtt.NewClient(opts)
	if tok := c3.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatal("connect", tok.Error())
	}
	defer c3.Disconnect(0)
	tok := c3.Publish("devices/dev-8/telemetry", 1, false, "x")
	waitFor(t, "the publish refused", func() bool { return b.Stats()[0].Failed >= 3 })
	if tok.WaitTimeout(500 * time.Millisecond) {
		t.Fatalf("3.1.1 publish acknowledged although its topic does not exist: %v", tok.Error())
	}
	if st := b.SpoolStats(); st.Entries != 0 || st.Stuck != 0 {
		t.Fatalf("refused publishes reached the spool: %+v", st)
	}
}

// A spooled record whose topic is deleted after it was acknowledged (and
// after the drainer's producer learnt the topic) is held, not skipped: the
// stats show it stuck, naming the topic, while another topic drains; once
// the topic exists again every message acknowledged since reaches it, in
// per-key order, exactly once.
func TestSpoolHoldsRecordsOfDeletedTopic(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(2, "telemetry", "other"))
	brokers := kc.ListenAddrs()[0]
	cfg := spoolConfig(brokers, t.TempDir())
	cfg.Routes = append(cfg.Routes, config.KafkaRoute{Name: "other", Filter: "other/+", Topic: "other", Ack: "spool"})
	b := newBridge(t, cfg) // Check: both topics known to exist
	addr := startBroker(t, b.Interceptor())

	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	const devices, per = 4, 50
	var clients []*paho.Client
	for d := range devices {
		c, err := dialV5(t, addr, fmt.Sprintf("dev-%d", d))
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// The drainer produces to the topic once, so its producer knows the
	// topic when it goes away.
	if code, reason, err := publish(ctx, clients[0], "devices/dev-0/telemetry", []byte("0")); err != nil || code != 0 {
		t.Fatalf("publish: %v 0x%02x %s", err, code, reason)
	}
	waitFor(t, "first record drained", func() bool { return b.Stats()[0].Produced == 1 })
	if res, err := ka.DeleteTopics(ctx, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, res.Error())
	}
	for d, c := range clients {
		for i := range per {
			if d == 0 && i == 0 {
				continue
			}
			if code, reason, err := publish(ctx, c, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(i))); err != nil || code != 0 {
				t.Fatalf("publish: %v 0x%02x %s", err, code, reason)
			}
		}
		if code, reason, err := publish(ctx, c, "other/x", []byte(strconv.Itoa(d))); err != nil || code != 0 {
			t.Fatalf("publish other: %v 0x%02x %s", err, code, reason)
		}
	}
	waitFor(t, "records held", func() bool {
		st := b.SpoolStats()
		return st.Stuck > 0 && slices.Equal(st.StuckTopics, []string{"telemetry"})
	})
	// Another topic drains around the stuck one.
	if recs := readAll(t, brokers, "other", devices, waitTimeout); len(recs) != devices {
		t.Fatalf("other: %d records", len(recs))
	}
	if st := b.SpoolStats(); st.Entries != devices*per-1 || st.StuckAge <= 0 {
		t.Fatalf("spool %+v, want %d entries kept", st, devices*per-1)
	}
	if st := b.Stats()[0]; st.AckedNotInKafka != devices*per-1 || st.Produced != 1 {
		t.Fatalf("route stats %+v", st)
	}

	// A deadline of its own: the steps above may have used most of ctx's.
	rctx, rcancel := context.WithTimeout(context.Background(), waitTimeout)
	defer rcancel()
	if res, err := ka.CreateTopics(rctx, 2, 1, nil, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("recreate topic: %v %v", err, res.Error())
	}
	waitFor(t, "spool drained", func() bool { st := b.SpoolStats(); return st.Entries == 0 && st.Stuck == 0 })
	// The first record went with the deleted topic; the rest are all there.
	s := &stream{devices: devices, n: per}
	recs := readAll(t, brokers, "telemetry", devices*per-1, waitTimeout)
	got := map[string][]string{}
	for _, r := range recs {
		got[string(r.Key)] = append(got[string(r.Key)], string(r.Value))
	}
	for d := range s.devices {
		var want []string
		for i := range s.n {
			if d > 0 || i > 0 {
				want = append(want, strconv.Itoa(i))
			}
		}
		if k := fmt.Sprintf("dev-%d", d); !slices.Equal(got[k], want) {
			t.Errorf("%s: got %v, want %v", k, got[k], want)
		}
	}
	if len(recs) != devices*per-1 {
		t.Errorf("%d records, want %d", len(recs), devices*per-1)
	}
	if st := b.Stats()[0]; st.AckedNotInKafka != 0 || st.Produced != devices*per {
		t.Errorf("stats %+v", st)
	}
}
