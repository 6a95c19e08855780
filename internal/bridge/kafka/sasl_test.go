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
	check := func(mod func(*config.Kafka), wait time.Duration) error {
		cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "#", Topic: "t"})
		mod(&cfg)
		b, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return b.Check(ctx)
	}
	cases := []struct {
		name string
		mod  func(*config.Kafka)
		want string // "" means success
		wait time.Duration
	}{
		{"plain ok", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "plain", Username: "culex", Password: "good"}
		}, "", 10 * time.Second},
		{"plain bad", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "plain", Username: "culex", Password: "bad"}
		}, "SASL plain: credentials for user \"culex\" rejected", 10 * time.Second},
		{"scram ok", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "scram-sha-256", Username: "scram", Password: "good"}
		}, "", 10 * time.Second},
		{"scram bad", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "scram-sha-256", Username: "scram", Password: "bad"}
		}, "SASL scram-sha-256: credentials for user \"scram\" rejected", 10 * time.Second},
		{"tls to plaintext", func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: "plain", Username: "culex", Password: "good"}
			c.TLS.Enabled = true
		}, "TLS is enabled", 2 * time.Second}, // only a timeout tells: keep it short
	}
	for _, tc := range cases {
		// A loaded machine (the whole suite runs at once under -race) once
		// took over 2 s to dial: the cases with an answer get 10 s.
		err := check(tc.mod, tc.wait)
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
