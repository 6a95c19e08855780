package kafka

import (
	"context"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Records held because their topic was deleted are listed with their route
// and key; an operator's retry of a held topic after it is recreated
// drains them, and a drop gives them up: the spool empties, each dropped
// record counted failed, none acknowledged-not-in-Kafka any more.
func TestHeldRecordsListRetryDrop(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, spoolConfig(brokers, t.TempDir()))
	addr := startBroker(t, b.Interceptor())
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	ctx, cancel := context.WithTimeout(context.Background(), 6*waitTimeout)
	defer cancel()
	c, err := dialV5(t, addr, "dev-0")
	if err != nil {
		t.Fatal(err)
	}
	pub := func(n int) {
		for i := range n {
			if code, reason, err := publish(ctx, c, "devices/dev-0/telemetry", []byte(strconv.Itoa(i))); err != nil || code != 0 {
				t.Fatalf("publish: %v 0x%02x %s", err, code, reason)
			}
		}
	}
	pub(1)
	waitFor(t, "first record drained", func() bool { return b.Stats()[0].Produced == 1 })
	if b.RetryHeld("telemetry") || len(b.Held()) != 0 {
		t.Fatal("a topic with nothing held was retried")
	}
	if res, err := ka.DeleteTopics(ctx, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, res.Error())
	}
	pub(5)
	waitFor(t, "five records held", func() bool { return len(b.Held()) == 5 })
	for _, h := range b.Held() {
		if h.Topic != "telemetry" || (!h.Retrying && (h.Route != "devices/+/telemetry" || string(h.Key) != "dev-0" || h.Size == 0)) {
			t.Fatalf("held %+v", h)
		}
	}
	if res, err := ka.CreateTopics(ctx, 1, 1, nil, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("recreate topic: %v %v", err, res.Error())
	}
	waitFor(t, "retried and drained", func() bool {
		b.RetryHeld("telemetry")
		st := b.SpoolStats()
		return st.Entries == 0 && st.Stuck == 0
	})
	if st := b.Stats()[0]; st.Produced != 6 || st.AckedNotInKafka != 0 {
		t.Fatalf("after the retry: %+v", st)
	}

	if res, err := ka.DeleteTopics(ctx, "telemetry"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, res.Error())
	}
	pub(3)
	waitFor(t, "three records held", func() bool { return b.SpoolStats().Stuck == 3 })
	dropped := 0
	waitFor(t, "held records dropped", func() bool {
		n, _ := b.DropHeld("telemetry") // one being retried comes back to be dropped
		dropped += n
		st := b.SpoolStats()
		return st.Entries == 0 && st.Stuck == 0
	})
	if st := b.Stats()[0]; dropped != 3 || st.AckedNotInKafka != 0 || st.Failed < 3 || st.SpoolBytes != 0 {
		t.Fatalf("dropped %d, stats %+v", dropped, st)
	}
	if _, ok := b.DropHeld("telemetry"); ok {
		t.Fatal("a second drop found records")
	}
}
