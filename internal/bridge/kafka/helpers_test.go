package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
)

const waitTimeout = 20 * time.Second

// startKafka starts an in-process Kafka-protocol server on a loopback port.
func startKafka(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	opts = append([]kfake.Opt{kfake.NumBrokers(1), kfake.Ports(0)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// kafkaConfig is a bridge config for brokers with short timeouts.
func kafkaConfig(brokers string, routes ...config.KafkaRoute) config.Kafka {
	c := config.Default().Kafka
	c.Brokers = brokers
	c.ProduceTimeout = 5 * time.Second
	c.Routes = routes
	return c
}

// newBridge creates a bridge, checks it and closes it at cleanup.
func newBridge(t *testing.T, cfg config.Kafka) *Bridge {
	t.Helper()
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

// startBroker serves a broker with the given interceptors on a loopback
// port and returns its address.
func startBroker(t *testing.T, ics ...broker.Interceptor) string {
	t.Helper()
	addr, _ := startBrokerB(t, ics...)
	return addr
}

// startBrokerB is startBroker returning the broker too.
func startBrokerB(t testing.TB, ics ...broker.Interceptor) (string, *broker.Broker) {
	t.Helper()
	return brokertest.Serve(t, broker.Options{Config: config.Default().MQTT, AllowAnonymous: true, Interceptors: ics})
}

// dialV5 connects an MQTT 5 client.
func dialV5(t testing.TB, addr, id string) (*paho.Client, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, PacketTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60}); err != nil {
		conn.Close()
		return nil, err
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		conn.Close()
	})
	return c, nil
}

// publish sends one QoS 1 message and returns the PUBACK reason code.
func publish(ctx context.Context, c *paho.Client, topic string, payload []byte) (byte, string, error) {
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if r != nil && r.ReasonCode >= 0x80 {
		reason := ""
		if r.Properties != nil {
			reason = r.Properties.ReasonString
		}
		return r.ReasonCode, reason, nil
	}
	return 0, "", err
}

// needTool returns the path of a program a test drives. A missing one
// skips the test, except in CI (CI=true), where scripts/test.sh installs
// every tool and a missing one fails the test rather than letting it pass
// unseen. It returns "" when tb did not stop the test (a stub TB).
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	return brokertest.Tool(tb, name, name)
}

// kcatRecord is one record as read back by kcat.
type kcatRecord struct {
	Key, Value, Headers string
	Partition           int
}

// kcatRead reads n records of topic with kcat, a Kafka client we did not
// write, and returns them in partition then offset order.
func kcatRead(t *testing.T, brokers, topic string, n int) []kcatRecord {
	t.Helper()
	kcat := needTool(t, "kcat")
	if kcat == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// \x1f separates fields and \x1e records: payloads here are text.
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", brokers, "-t", topic, "-o", "beginning",
		"-c", fmt.Sprint(n), "-e", "-q", "-f", "%p\x1f%k\x1f%s\x1f%h\x1e")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, stderr.String())
	}
	var recs []kcatRecord
	for _, line := range strings.Split(string(out), "\x1e") {
		if line == "" || line == "\n" {
			continue
		}
		f := strings.Split(line, "\x1f")
		if len(f) != 4 {
			t.Fatalf("kcat line %q", line)
		}
		var p int
		fmt.Sscan(f[0], &p)
		recs = append(recs, kcatRecord{Partition: p, Key: f[1], Value: f[2], Headers: f[3]})
	}
	return recs
}

// readFromStart is a client that reads topic from its first record; the caller
// closes it.
func readFromStart(t *testing.T, brokers, topic string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// readAll consumes topic from the start with franz-go until n records or
// the deadline, returning records in per-partition offset order.
func readAll(t *testing.T, brokers, topic string, n int, deadline time.Duration) []*kgo.Record {
	t.Helper()
	cl := readFromStart(t, brokers, topic)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Logf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
			}
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func newStderrLogger() *slog.Logger { return slog.New(slog.NewTextHandler(os.Stderr, nil)) }
