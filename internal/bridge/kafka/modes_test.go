package kafka

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// Ack mode none acknowledges at once and produces best effort; the gauge
// of acknowledged-not-in-Kafka counts what a crash would lose until Kafka
// acks. QoS 0 never waits.
func TestAckNone(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "t"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers, config.KafkaRoute{Filter: "#", Topic: "t", Ack: "none"}))
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if code, _, err := publish(context.Background(), c, "a", []byte("x")); err != nil || code != 0 {
			t.Fatal(err, code)
		}
	}
	waitFor(t, "best-effort records produced", func() bool { return b.Stats()[0].Produced == 20 })
	if st := b.Stats()[0]; st.AckedNotInKafka != 0 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	if recs := kcatRead(t, brokers, "t", 20); len(recs) != 20 {
		t.Errorf("kcat read %d", len(recs))
	}
}

// A 3.1.1 publisher whose message Kafka refuses gets no PUBACK (it has no
// reason codes) and would retransmit; nothing is acknowledged.
func TestV311NoAckOnFailure(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "t"))
	brokers := kc.ListenAddrs()[0]
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "a/+", Topic: "t.${2}"})
	b := newBridge(t, cfg)
	addr := startBroker(t, b.Interceptor())
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("v3").SetProtocolVersion(4).
		SetAutoReconnect(false).SetCleanSession(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return net.DialTimeout("tcp", u.Host, 5*time.Second)
		})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatal("connect", tok.Error())
	}
	defer c.Disconnect(0)
	tok := c.Publish("a/missing", 1, false, "x")
	waitFor(t, "the record failed", func() bool { return b.Stats()[0].Failed >= 1 })
	// Absence of a PUBACK: give it a moment after the failure was recorded.
	if tok.WaitTimeout(500 * time.Millisecond) {
		t.Fatalf("3.1.1 publish acknowledged although Kafka refused it: %v", tok.Error())
	}
}
