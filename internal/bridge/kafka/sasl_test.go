package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// Check names the cause of a connection failure: SASL PLAIN and SCRAM with
// a wrong password, and a TLS client against a plaintext listener; with the
// right credentials the same config checks clean.
func TestCheckConnectionErrors(t *testing.T) {
	kc := startKafka(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "culex", "good"),
		kfake.Superuser("SCRAM-SHA-256", "scram", "good"), kfake.SeedTopics(1, "t"))
	brokers := kc.ListenAddrs()[0]
	check := func(mod func(*config.Kafka)) error {
		cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "#", Topic: "t"})
		mod(&cfg)
		b, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return b.Check(ctx)
	}
	cases := []struct {
		name string
		mod  func(*config.Kafka)
		want string // "" means success
	}{
		{"plain ok", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "plain", Username: "culex", Password: "good"}
		}, ""},
		{"plain bad", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "plain", Username: "culex", Password: "bad"}
		}, "SASL plain: credentials for user \"culex\" rejected"},
		{"scram ok", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "scram-sha-256", Username: "scram", Password: "good"}
		}, ""},
		{"scram bad", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "scram-sha-256", Username: "scram", Password: "bad"}
		}, "SASL scram-sha-256: credentials for user \"scram\" rejected"},
		{"tls to plaintext", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "plain", Username: "culex", Password: "good"}
			c.TLS.Enabled = true
		}, "TLS is enabled"},
	}
	for _, tc := range cases {
		err := check(tc.mod)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		default:
			t.Logf("%s: %v", tc.name, err)
		}
	}
}
