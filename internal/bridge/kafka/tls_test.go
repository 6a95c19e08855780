package kafka

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testcert"
)

// The bridge talks to a TLS listener with a CA file: Check passes, kafka-
// and spool-mode publishes reach Kafka and are read back over TLS. A CA
// file of another authority fails Check naming the TLS handshake, the
// unknown authority and the CA file; a CA file without a certificate fails New.
func TestTLSWithCAFile(t *testing.T) {
	ca := testcert.NewCA(t, "culex test CA")
	kc := startKafka(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.Server(t, "kafka")}, MinVersion: tls.VersionTLS12}),
		kfake.SeedTopics(1, "t", "s"))
	brokers := kc.ListenAddrs()[0]
	dir := t.TempDir()
	caFile := ca.WriteFile(t, dir, "ca.pem")
	tlsCfg := func(file string) config.Kafka {
		cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "k/+", Topic: "t"},
			config.KafkaRoute{Filter: "s/+", Topic: "s", Ack: "spool"})
		cfg.Spool = config.KafkaSpool{Dir: t.TempDir(), MaxBytes: 1 << 20, SegmentBytes: 16 << 10}
		cfg.TLS = config.KafkaTLS{Enabled: true, CAFile: file}
		return cfg
	}

	b := newBridge(t, tlsCfg(caFile)) // Check over TLS
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"k/1", "s/1"} {
		if code, reason, err := publish(context.Background(), c, topic, []byte(topic)); err != nil || code != 0 {
			t.Fatalf("%s: %v 0x%02x %s", topic, err, code, reason)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool()}),
		kgo.ConsumeTopics("t", "s"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]string{}
	deadline := time.Now().Add(waitTimeout)
	for len(got) < 2 && time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[r.Topic] = string(r.Value) })
		cancel()
	}
	if got["t"] != "k/1" || got["s"] != "s/1" {
		t.Fatalf("read back over TLS: %v", got)
	}

	wrong := testcert.NewCA(t, "another CA").WriteFile(t, dir, "wrong-ca.pem")
	bad, err := New(tlsCfg(wrong), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = bad.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "TLS handshake failed") || !strings.Contains(err.Error(), "unknown authority") ||
		!strings.Contains(err.Error(), wrong) {
		t.Fatalf("wrong CA: %v, want a TLS handshake failure naming the unknown authority and the CA file", err)
	}
	if Unreachable(err) {
		t.Errorf("wrong CA reported as unreachable (culex serve would start): %v", err)
	}
	t.Logf("wrong CA: %v", err)

	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(tlsCfg(empty), nil); err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("CA file without a certificate: %v", err)
	}
}
