package kafka

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// A real `culex serve` in spool mode, SIGKILLed four times while 16 devices
// stream QoS 1 publishes into it, with Kafka down and the spool holding a
// backlog of acknowledged messages, and restarted on the same spool dir
// each time (on a new port the devices reconnect to); then Kafka returns.
// Every acknowledged message reaches Kafka, first deliveries in per-key
// order, duplicates within the failed publishes plus the drain window of
// each crash.
func TestSpoolKill9(t *testing.T) {
	kdir, sdir := t.TempDir(), t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.DataDir(kdir), kfake.SeedTopics(4, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := kc.ListenAddrs()[0]
	_, port, _ := net.SplitHostPort(brokers)
	p, _ := strconv.Atoi(port)
	cfgFile := filepath.Join(t.TempDir(), "culex.yaml")
	cfg := fmt.Sprintf(`data_dir: ""
listeners: [tcp://127.0.0.1:0]
auth: {allow_anonymous: true}
kafka:
  brokers: %q
  produce_timeout: 5s
  spool: {dir: %q, max_bytes: 67108864, segment_bytes: 16384}
  routes:
    - {filter: devices/+/telemetry, topic: telemetry, ack: spool}
`, brokers, sdir)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	node := startCulex(t, cfgFile)

	s := &stream{devices: 16, n: 200}
	s.retarget(node.addr)
	total := int64(s.devices * s.n)
	wait := startStream(t, s, 3*time.Minute)
	// Each crash catches an acknowledgement released too early only if one
	// is pending at the kill (most of the time): four make a miss unlikely.
	const crashes = 4
	waitAcked(t, s, total/(crashes+2))
	kc.Close() // Kafka down: acknowledged messages are only in the spool
	for i := range crashes {
		waitAcked(t, s, total*int64(2+i)/(crashes+2))
		node.kill() // mid-stream: each device has a publish in flight
		t.Logf("culex serve killed with -9 after %d acknowledged", s.acked.Load())
		node = startCulex(t, cfgFile)
		s.retarget(node.addr)
	}
	kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(p), kfake.DataDir(kdir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	wait()
	failed := s.failed.Load()
	s.failed.Add(crashes * maxDrainInflight) // entries produced but not checkpointed are produced again
	dups := s.verify(t, brokers, "telemetry")
	t.Logf("Kafka down from %d acknowledged; %d failed publishes, %d duplicates", total/(crashes+2), failed, dups)
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
