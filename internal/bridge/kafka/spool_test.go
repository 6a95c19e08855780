package kafka

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
)

func TestSpoolEntryRoundTrip(t *testing.T) {
	r := &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v"), Timestamp: time.Unix(0, 12345),
		Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "a", Value: nil}}}
	buf := encodeEntry(nil, 3, r)
	buf = encodeEntry(buf, 1, &kgo.Record{Topic: "u", Timestamp: time.Unix(0, 1)})
	rd := bufio.NewReader(bytes.NewReader(buf))
	e, err := readEntry(rd)
	if err != nil || e.route != 3 || e.rec.Topic != "t" || string(e.rec.Key) != "k" || string(e.rec.Value) != "v" ||
		e.rec.Timestamp.UnixNano() != 12345 || len(e.rec.Headers) != 2 || e.rec.Headers[0].Key != "a" {
		t.Fatalf("%+v %v", e, err)
	}
	e, err = readEntry(rd)
	if err != nil || e.rec.Key != nil || e.rec.Topic != "u" {
		t.Fatalf("nil key: %+v %v", e, err)
	}
	if _, err := readEntry(rd); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	// Every proper prefix of an entry is torn.
	one := encodeEntry(nil, 0, r)
	for i := 1; i < len(one); i++ {
		if _, err := readEntry(bufio.NewReader(bytes.NewReader(one[:i]))); err != errTorn {
			t.Fatalf("prefix %d: %v", i, err)
		}
	}
}

func spoolConfig(brokers, dir string) config.Kafka {
	cfg := kafkaConfig(brokers, config.KafkaRoute{Filter: "devices/+/telemetry", Topic: "telemetry", Ack: "spool"})
	cfg.Spool = config.KafkaSpool{Dir: dir, MaxBytes: 64 << 20, SegmentBytes: 16 << 10}
	return cfg
}

// With Kafka down, spool-mode publishes are acknowledged from the disk
// spool; when Kafka returns the spool drains in order, the gauge of
// acknowledged-not-in-Kafka returns to zero and drained segments go away.
func TestSpoolDrainsAfterOutage(t *testing.T) {
	kdir, sdir := t.TempDir(), t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.DataDir(kdir), kfake.SeedTopics(2, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := kc.ListenAddrs()[0]
	_, port, _ := net.SplitHostPort(brokers)
	p, _ := strconv.Atoi(port)
	b := newBridge(t, spoolConfig(brokers, sdir))
	addr := startBroker(t, b.Interceptor())
	kc.Close() // Kafka down

	const devices, per = 4, 250
	for d := range devices {
		c, err := dialV5(t, addr, fmt.Sprintf("dev-%d", d))
		if err != nil {
			t.Fatal(err)
		}
		for i := range per {
			if code, reason, err := publish(context.Background(), c, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(i))); err != nil || code != 0 {
				t.Fatalf("publish with Kafka down: %v 0x%02x %s", err, code, reason)
			}
		}
	}
	if st := b.Stats()[0]; st.AckedNotInKafka != devices*per || st.SpoolBytes <= 0 || st.SpoolBytes != b.SpoolStats().Bytes {
		t.Errorf("acked-not-in-kafka %d (want %d), spool bytes %d (spool %d)", st.AckedNotInKafka, devices*per, st.SpoolBytes, b.SpoolStats().Bytes)
	}
	if sp := b.SpoolStats(); sp.Entries != devices*per || sp.Bytes <= 0 {
		t.Errorf("spool %+v", sp)
	}
	segs, _ := listSegments(sdir)
	if len(segs) < 2 {
		t.Errorf("%d segments, want rotation", len(segs))
	}

	kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(p), kfake.DataDir(kdir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	waitFor(t, "spool drained", func() bool { return b.SpoolStats().Entries == 0 })
	s := &stream{devices: devices, n: per}
	verifyTopics(t, s, brokers, "telemetry")
	waitFor(t, "segments deleted", func() bool { segs, _ := listSegments(sdir); return len(segs) == 1 })
	if st := b.Stats()[0]; st.AckedNotInKafka != 0 || st.SpoolBytes != 0 || st.Produced != devices*per {
		t.Errorf("stats %+v", st)
	}
}

// verifyTopics is stream.verify keyed by client id.
func verifyTopics(t *testing.T, s *stream, brokers, topic string) {
	t.Helper()
	if d := s.verify(t, brokers, topic); d != 0 {
		t.Errorf("%d duplicates without a crash", d)
	}
}

// A full spool refuses new publishes with 0x97 and evicts nothing.
func TestSpoolFullBackpressure(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "telemetry"))
	brokers := kc.ListenAddrs()[0]
	cfg := spoolConfig(brokers, t.TempDir())
	cfg.Spool.MaxBytes = 2000
	kc.Close() // Kafka down: nothing drains
	b := newBridgeNoCheck(t, cfg)
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "dev-0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted int
	for i := range 100 {
		code, reason, err := publish(context.Background(), c, "devices/dev-0/telemetry", []byte(strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if code == 0x97 {
			if !strings.Contains(reason, "spool full") {
				t.Errorf("reason %q", reason)
			}
			break
		}
		if code != 0 {
			t.Fatalf("0x%02x %s", code, reason)
		}
		accepted++
	}
	if accepted == 0 || accepted == 100 {
		t.Fatalf("accepted %d", accepted)
	}
	if sp := b.SpoolStats(); sp.Entries != uint64(accepted) {
		t.Errorf("spool holds %d entries, %d were acknowledged", sp.Entries, accepted)
	}
}

func newBridgeNoCheck(t *testing.T, cfg config.Kafka) *Bridge {
	t.Helper()
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

const spoolChildEnv = "CULEX_TEST_SPOOL_CHILD"

// TestSpoolChild is the culex process of TestSpoolKill9: a broker with the
// bridge in spool mode, killed by the parent.
func TestSpoolChild(t *testing.T) {
	b, err := New(childConfig(t, spoolChildEnv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr := startBroker(t, b.Interceptor())
	fmt.Fprintf(os.Stderr, "SPOOLCHILD %s\n", addr)
	select {} // until killed
}

func startSpoolChild(t *testing.T, cfg config.Kafka) (*exec.Cmd, string) {
	t.Helper()
	return startConfigChild(t, "TestSpoolChild", spoolChildEnv, cfg, "SPOOLCHILD ")
}

// culex killed with -9 in spool mode while Kafka is down and the spool
// holds a backlog: after a restart with the same spool directory every
// acknowledged message reaches Kafka, first deliveries in per-key order,
// duplicates within the drain window.
func TestSpoolKill9(t *testing.T) {
	if os.Getenv(spoolChildEnv) != "" {
		t.Skip("in child")
	}
	kdir, sdir := t.TempDir(), t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.DataDir(kdir), kfake.SeedTopics(4, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := kc.ListenAddrs()[0]
	_, port, _ := net.SplitHostPort(brokers)
	p, _ := strconv.Atoi(port)
	cfg := spoolConfig(brokers, sdir)
	child, addr := startSpoolChild(t, cfg)

	const devices, per = 4, 300
	next := make([]int, devices) // next seq per device; below it all acknowledged
	pubPhase := func(addr string, upto int) {
		for d := range devices {
			c, err := dialV5(t, addr, fmt.Sprintf("dev-%d", d))
			if err != nil {
				t.Fatal(err)
			}
			for ; next[d] < upto; next[d]++ {
				code, reason, err := publish(context.Background(), c, fmt.Sprintf("devices/dev-%d/telemetry", d), []byte(strconv.Itoa(next[d])))
				if err != nil || code != 0 {
					t.Fatalf("publish: %v 0x%02x %s", err, code, reason)
				}
			}
		}
	}
	pubPhase(addr, per/3)
	kc.Close() // Kafka down: the spool grows
	pubPhase(addr, 2*per/3)
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(p), kfake.DataDir(kdir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	_, addr = startSpoolChild(t, cfg)
	pubPhase(addr, per)
	s := &stream{devices: devices, n: per}
	s.failed.Store(maxDrainInflight) // the duplicate bound of one crash
	dups := s.verify(t, brokers, "telemetry")
	t.Logf("kill -9 with %d spooled: %d duplicates", devices*per/3, dups)
}

// A torn tail (an append cut by a crash before its fsync, never
// acknowledged) is cut off at recovery; the entries before it stay.
func TestSpoolRecoverTornTail(t *testing.T) {
	dir := t.TempDir()
	var buf []byte
	for i := range 2 {
		buf = encodeEntry(buf, 0, &kgo.Record{Topic: "telemetry", Value: []byte(strconv.Itoa(i))})
	}
	good := len(buf)
	third := encodeEntry(nil, 0, &kgo.Record{Topic: "telemetry", Value: []byte("2")})
	buf = append(buf, third[:len(third)-3]...)
	if err := os.WriteFile(segPath(dir, 0), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := spoolConfig("127.0.0.1:1", dir)
	rs, err := compileRoutes(cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	s, err := openSpool(cfg.Spool, cfg, rs.list, newStderrLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if d := s.durable.Load(); d != 2 {
		t.Errorf("recovered %d entries, want 2", d)
	}
	if fi, err := os.Stat(segPath(dir, 0)); err != nil || fi.Size() != int64(good) {
		t.Errorf("segment size %v %v, want %d", fi.Size(), err, good)
	}
}
