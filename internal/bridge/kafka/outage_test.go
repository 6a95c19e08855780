package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// summaryRE matches the bridge's per-route failure summary in serve's log.
var summaryRE = regexp.MustCompile(`msg="kafka: publishes failed" route=(\S+) failed=(\d+) expired=(\d+)`)

// summed adds up the failure summaries of route in log: failed, expired.
func summed(log, route string) (failed, expired int) {
	for _, m := range summaryRE.FindAllStringSubmatch(log, -1) {
		if m[1] != route {
			continue
		}
		f, _ := strconv.Atoi(m[2])
		e, _ := strconv.Atoi(m[3])
		failed, expired = failed+f, expired+e
	}
	return failed, expired
}

// waitLog waits until serve's log satisfies cond.
func (p *culexProc) waitLog(t *testing.T, what string, cond func(log string) bool) {
	t.Helper()
	waitFor(t, what, func() bool { return cond(p.log.String()) })
}

// dialV311 connects an MQTT 3.1.1 client that never reconnects (so never
// retransmits) to addr.
func dialV311(t *testing.T, addr, id string) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetCleanSession(true).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return net.DialTimeout("tcp", u.Host, 5*time.Second)
		})
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatal("connect", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// kcatUntil reads topic with kcat until it holds want records (or the
// deadline) and returns what it read last.
func kcatUntil(t *testing.T, brokers, topic string, want int) []kcatRecord {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		recs := kcatRead(t, brokers, topic, want+1000) // -e: stops at the end
		if len(recs) >= want || time.Now().After(deadline) {
			return recs
		}
		time.Sleep(100 * time.Millisecond) // poll
	}
}

// Issue 18 item 2, and item 5 for a stopped Kafka. A real `culex serve`
// with produce_timeout 1s, Kafka (kfake) in its own process. Kafka
// killed, a marker publish gets 0x80 and serve logs Kafka unreachable;
// then 20 QoS 1 publishes of a v5 device get PUBACK 0x80 and 20 of a
// 3.1.1 device get no PUBACK; serve logs Kafka unreachable and, per route,
// the expired publishes (21 and 20). Kafka restarted on its port with its
// data: every one of the 41 records reaches Kafka, once (read with kcat), serve
// logs Kafka reachable again, and the 3.1.1 publishes are still
// unacknowledged (their device was told nothing; it would retransmit).
func TestExpiredPublishesReachKafka(t *testing.T) {
	if os.Getenv(kfakeChildEnv) != "" {
		t.Skip("in child")
	}
	needTool(t, "kcat")
	kdir := t.TempDir()
	proc, brokers := startKfakeProc(t, 0, kdir)
	_, portS, _ := net.SplitHostPort(brokers)
	port, _ := strconv.Atoi(portS)
	node := startCulex(t, writeServeConfig(t, brokers, "    - {name: v311, filter: v311/+, topic: telemetry}\n"))
	c5, err := dialV5(t, node.addr, "dev5")
	if err != nil {
		t.Fatal(err)
	}
	c3 := dialV311(t, node.addr, "dev3")
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	// Kafka up: both devices' first publishes are acknowledged after Kafka.
	if code, reason, err := publish(ctx, c5, "v5/x", []byte("v5-first")); err != nil || code != 0 {
		t.Fatalf("first v5 publish: %v 0x%02x %s", err, code, reason)
	}
	if tok := c3.Publish("v311/x", 1, false, "v311-first"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("first 3.1.1 publish: %v", tok.Error())
	}

	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	// A marker publish finds Kafka gone (the producer's connection breaks);
	// the 40 publishes below then wait in the producer with Kafka refusing
	// connections, never sent. The marker's device (its record key) is on
	// a partition of its own: the producer cannot give up on a partition
	// whose record it sent without an answer, which would hide the loss.
	mc, err := dialV5(t, node.addr, markerID("dev5", "dev3"))
	if err != nil {
		t.Fatal(err)
	}
	if code, reason, err := publish(ctx, mc, "v5/x", []byte("v5-marker")); err != nil || code != 0x80 {
		t.Fatalf("v5 marker publish with Kafka down: %v 0x%02x %s, want 0x80", err, code, reason)
	}
	node.waitLog(t, "kafka: unreachable", func(log string) bool {
		return strings.Contains(log, `level=WARN msg="kafka: unreachable" role=producer broker=`+brokers)
	})

	const n = 20
	var wg sync.WaitGroup
	codes := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, reason, err := publish(ctx, c5, "v5/x", []byte(fmt.Sprintf("v5-%d", i)))
			codes[i] = fmt.Sprintf("0x%02x %s %v", code, reason, err)
		}()
	}
	var toks []mqtt.Token
	for i := range n {
		toks = append(toks, c3.Publish("v311/x", 1, false, fmt.Sprintf("v311-%d", i)))
	}
	wg.Wait()
	for i, c := range codes {
		if !strings.HasPrefix(c, "0x80 kafka: no ack within 1s") {
			t.Errorf("v5 publish %d with Kafka down: %s, want 0x80 kafka: no ack within 1s", i, c)
		}
	}
	node.waitLog(t, "20 expired publishes per route in the log summary", func(log string) bool {
		_, e5 := summed(log, "v5")
		_, e3 := summed(log, "v311")
		return e5 == n+1 && e3 == n
	})
	for i, tok := range toks {
		if tok.WaitTimeout(0) {
			t.Errorf("3.1.1 publish %d acknowledged with Kafka down (err %v)", i, tok.Error())
		}
	}

	startKfakeProc(t, port, kdir)
	recs := kcatUntil(t, brokers, "telemetry", 3+2*n)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Value]++
	}
	for _, v := range []string{"v5-first", "v311-first", "v5-marker"} {
		if seen[v] != 1 {
			t.Errorf("record %s read %d times, want 1", v, seen[v])
		}
	}
	for _, dev := range []string{"v5", "v311"} {
		missing := 0
		for i := range n {
			switch seen[fmt.Sprintf("%s-%d", dev, i)] {
			case 0:
				missing++
			case 1:
			default:
				t.Errorf("record %s-%d read %d times", dev, i, seen[fmt.Sprintf("%s-%d", dev, i)])
			}
		}
		if missing > 0 {
			t.Errorf("%d of %d expired %s publishes never reached Kafka", missing, n, dev)
		}
	}
	if len(recs) != 3+2*n {
		t.Errorf("kcat read %d records, want %d", len(recs), 3+2*n)
	}
	node.waitLog(t, "kafka: reachable again", func(log string) bool {
		return strings.Contains(log, `level=INFO msg="kafka: reachable again" role=producer broker=`+brokers)
	})
	// Every record is in Kafka: the 3.1.1 device, told nothing, still waits.
	for i, tok := range toks {
		if tok.WaitTimeout(0) {
			t.Errorf("3.1.1 publish %d acknowledged after it expired (err %v)", i, tok.Error())
		}
	}
}

// markerID is a client id whose records (keyed by client id) go to another
// of the 4 partitions than those of ids.
func markerID(ids ...string) string {
	part := func(id string) int32 { return (javaMurmur2([]byte(id)) & 0x7fffffff) % 4 }
	for i := 0; ; i++ {
		m := fmt.Sprintf("marker-%d", i)
		if !slices.ContainsFunc(ids, func(id string) bool { return part(id) == part(m) }) {
			return m
		}
	}
}

// writeServeConfig writes a `culex serve` config with one anonymous TCP
// listener, produce_timeout 1s and a route of v5/+ to telemetry, followed
// by the route lines in more.
func writeServeConfig(t *testing.T, brokers string, more ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "culex.yaml")
	cfg := fmt.Sprintf(`data_dir: ""
listeners: [tcp://127.0.0.1:0]
auth: {allow_anonymous: true}
kafka:
  brokers: %q
  produce_timeout: 1s
  routes:
    - {name: v5, filter: v5/+, topic: telemetry}
`, brokers) + strings.Join(more, "")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Issue 18 item 5, Kafka hung: it accepts connections and never answers.
// A real `culex serve`: its publishes get 0x80 and it logs, at WARN, Kafka
// unreachable (no answer in time) and the expired publishes; when Kafka
// answers again it logs reachable again at INFO, once, and the records
// arrive.
func TestOutageLoggedKafkaHung(t *testing.T) {
	hl, kc := startHungKafka(t, kfake.SeedTopics(4, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	node := startCulex(t, writeServeConfig(t, brokers))
	c, err := dialV5(t, node.addr, "dev")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	if code, reason, err := publish(ctx, c, "v5/x", []byte("first")); err != nil || code != 0 {
		t.Fatalf("publish with Kafka up: %v 0x%02x %s", err, code, reason)
	}
	if log := node.log.String(); strings.Contains(log, "kafka: unreachable") {
		t.Fatalf("Kafka up, yet the log says unreachable:\n%s", log)
	}

	hl.hang()
	const n = 5
	for i := range n {
		if code, reason, err := publish(ctx, c, "v5/x", []byte(fmt.Sprint(i))); err != nil || code != 0x80 {
			t.Fatalf("publish %d with Kafka hung: %v 0x%02x %s, want 0x80", i, err, code, reason)
		}
	}
	unreachable := `level=WARN msg="kafka: unreachable" role=producer broker=` + brokers
	node.waitLog(t, "kafka: unreachable and the expired publishes", func(log string) bool {
		_, e := summed(log, "v5")
		return strings.Contains(log, unreachable) && e == n
	})
	hl.resume()
	if recs := readAll(t, brokers, "telemetry", n+1, waitTimeout); len(recs) != n+1 {
		t.Errorf("%d records after the hang, want %d", len(recs), n+1)
	}
	again := `level=INFO msg="kafka: reachable again" role=producer broker=` + brokers
	node.waitLog(t, "kafka: reachable again", func(log string) bool { return strings.Contains(log, again) })
	// One more answered request after the recovery: still one line each.
	if code, reason, err := publish(ctx, c, "v5/x", []byte("last")); err != nil || code != 0 {
		t.Fatalf("publish after the hang: %v 0x%02x %s", err, code, reason)
	}
	// Once per transition: during the hang franz-go redialled and retried
	// many times, yet the lines alternate, starting with unreachable and
	// ending with reachable again (one pair unless a request straddled
	// the resume).
	var seq []string
	for _, line := range strings.Split(node.log.String(), "\n") {
		switch {
		case strings.Contains(line, unreachable):
			seq = append(seq, "unreachable")
		case strings.Contains(line, again):
			seq = append(seq, "again")
		}
	}
	for i, l := range seq {
		if want := []string{"unreachable", "again"}[i%2]; l != want || len(seq)%2 != 0 {
			t.Fatalf("outage lines %v, want unreachable and reachable again alternating, once per transition", seq)
		}
	}
	t.Logf("outage lines: %v", seq)
}

// Issue 18 item 5: a Kafka host name that does not resolve (on Kubernetes,
// a Service not created yet) is an outage, not a start-up error: `culex
// serve` starts, serves MQTT (a publish outside the routes is
// acknowledged, a subscriber gets it), logs Kafka unreachable naming the
// host, and route publishes expire with 0x80, summarised in the log.
func TestServeWithUnresolvableKafka(t *testing.T) {
	node := startCulex(t, writeServeConfig(t, "kafka.invalid:9092"))
	sub, err := dialV5(t, node.addr, "sub")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	sub.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		got <- string(pr.Packet.Payload)
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "plain/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	c, err := dialV5(t, node.addr, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if code, reason, err := publish(ctx, c, "plain/x", []byte("hello")); err != nil || code != 0 {
		t.Fatalf("publish outside the routes: %v 0x%02x %s", err, code, reason)
	}
	select {
	case p := <-got:
		if p != "hello" {
			t.Errorf("subscriber got %q", p)
		}
	case <-ctx.Done():
		t.Fatal("subscriber got nothing")
	}
	if code, _, err := publish(ctx, c, "v5/x", []byte("x")); err != nil || code != 0x80 {
		t.Fatalf("route publish without Kafka: %v 0x%02x, want 0x80", err, code)
	}
	node.waitLog(t, "kafka: unreachable naming the host, and the expired publish", func(log string) bool {
		_, e := summed(log, "v5")
		return strings.Contains(log, `level=WARN msg="kafka: unreachable" role=producer broker=kafka.invalid:9092`) && e == 1
	})
}

// The failure summary: one line per route with failures in the period,
// with the period's counts and the last cause; none for a quiet route or
// a quiet period.
func TestFailureSummary(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	b, err := New(kafkaConfig("127.0.0.1:1", config.KafkaRoute{Name: "a", Filter: "a/#", Topic: "t"},
		config.KafkaRoute{Name: "b", Filter: "b/#", Topic: "t"}), log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a := b.routes.list[0].stats
	last := make([][2]int64, 2)
	a.fail(errors.New("record too large"))
	a.expire(errors.New("kafka: no ack within 5s"))
	a.expire(errors.New("kafka: no ack within 5s"))
	b.summary(last, summaryEvery)
	a.fail(errors.New("unknown topic"))
	b.summary(last, summaryEvery)
	b.summary(last, summaryEvery) // quiet period
	want := `level=WARN msg="kafka: publishes failed" route=a failed=1 expired=2 period=10s last_err="kafka: no ack within 5s"` + "\n" +
		`level=WARN msg="kafka: publishes failed" route=a failed=1 expired=0 period=10s last_err="unknown topic"` + "\n"
	got := regexp.MustCompile(`(?m)^time=\S+ `).ReplaceAllString(buf.String(), "")
	if got != want {
		t.Errorf("summary lines:\n%s\nwant:\n%s", got, want)
	}
}
