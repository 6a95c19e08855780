package kafka

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// outage is how long Kafka stays stopped or hung in the fault tests. The
// issue asks for 60 s; the default run uses 3 s to stay fast on CI:
// go test -run Fault -kafka.outage=60s ./internal/bridge/kafka/
var outage = flag.Duration("kafka.outage", 3*time.Second, "Kafka outage in fault tests")

// stream is a set of devices, each publishing seq 0..n-1 at QoS 1 one at a
// time; a failed publish (v5 reason code, or a lost connection) is retried
// with the same seq, as a device does with an unacknowledged message.
type stream struct {
	addr    atomic.Pointer[string] // the broker's host:port; retarget moves it
	devices int
	n       int
	acked   atomic.Int64
	failed  atomic.Int64
}

// retarget points the devices' next connections at addr (a restarted
// broker's new port).
func (s *stream) retarget(addr string) { s.addr.Store(&addr) }

func (s *stream) target() string { return *s.addr.Load() }

func (s *stream) run(t *testing.T, ctx context.Context) {
	var wg sync.WaitGroup
	for d := range s.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("dev-%d", d)
			c, err := dialV5(t, s.target(), id)
			for seq := 0; seq < s.n; {
				if ctx.Err() != nil {
					t.Errorf("%s: stream deadline at seq %d: %v", id, seq, err)
					return
				}
				if err != nil {
					if c, err = dialV5(t, s.target(), id); err != nil {
						time.Sleep(10 * time.Millisecond) // a device's reconnect backoff while the broker is down
					}
					continue
				}
				code, _, perr := publishUntilLost(ctx, c, "devices/"+id+"/telemetry", []byte(strconv.Itoa(seq)))
				switch {
				case perr != nil:
					s.failed.Add(1)
					err = perr
				case code >= 0x80:
					s.failed.Add(1)
				default:
					s.acked.Add(1)
					seq++
				}
			}
		}()
	}
	wg.Wait()
}

// publishUntilLost is publish that gives up when the connection is lost
// (the broker killed), where paho would wait for its packet timeout.
func publishUntilLost(ctx context.Context, c *paho.Client, topic string, payload []byte) (byte, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return publish(ctx, c, topic, payload)
}

// verify reads the topic back and checks, per key: every seq is present (no
// loss), first deliveries are in seq order, and duplicates are within the
// bound (at most one per failed publish). It returns the duplicate count.
func (s *stream) verify(t *testing.T, brokers, topic string) int {
	t.Helper()
	recs := readAll(t, brokers, topic, s.devices*s.n, waitTimeout)
	perKey := map[string][]int{}
	for _, r := range recs {
		v, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("record value %q", r.Value)
		}
		perKey[string(r.Key)] = append(perKey[string(r.Key)], v)
	}
	dups := 0
	for d := range s.devices {
		key := fmt.Sprintf("dev-%d", d)
		seen := map[int]bool{}
		next := 0
		for _, v := range perKey[key] {
			if seen[v] {
				dups++
				continue
			}
			if v != next {
				t.Errorf("%s: first delivery of %d after %d (order broken or gap)", key, v, next-1)
			}
			seen[v] = true
			next = v + 1
		}
		if len(seen) != s.n {
			var missing []int
			for i := range s.n {
				if !seen[i] {
					missing = append(missing, i)
				}
			}
			t.Errorf("%s: %d of %d delivered, missing %v", key, len(seen), s.n, missing)
		}
	}
	if int64(dups) > s.failed.Load() {
		t.Errorf("%d duplicates, more than the %d failed publishes", dups, s.failed.Load())
	}
	return dups
}

// startStream runs s in the background; wait returns when every device is done.
func startStream(t *testing.T, s *stream, limit time.Duration) (wait func()) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(t, ctx)
	}()
	return func() { <-done; cancel() }
}

// startFaultStream serves a broker with a bridge to brokers (produce timeout
// 2 s) and starts a stream of n messages from each of 8 devices through it.
// extra routes are added after the stream's.
func startFaultStream(t *testing.T, brokers string, n int, extra ...config.KafkaRoute) (b *Bridge, s *stream, wait func()) {
	t.Helper()
	cfg := kafkaConfig(brokers, append([]config.KafkaRoute{{Filter: "devices/+/telemetry", Topic: "telemetry"}}, extra...)...)
	cfg.ProduceTimeout = 2 * time.Second
	b = newBridge(t, cfg)
	s = &stream{devices: 8, n: n}
	s.retarget(startBroker(t, b.Interceptor()))
	return b, s, startStream(t, s, 2*time.Minute+*outage)
}

func waitAcked(t *testing.T, s *stream, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for s.acked.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acked, waiting for %d", s.acked.Load(), n)
		}
		time.Sleep(5 * time.Millisecond) // poll
	}
}

// Kafka stopped mid-stream (connection refused) and restarted on the same
// port with its data: nothing acknowledged is lost, publishers wait or
// retry, and everything drains in per-key order.
func TestFaultKafkaStopped(t *testing.T) {
	dir := t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.DataDir(dir), kfake.SeedTopics(4, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := kc.ListenAddrs()[0]
	_, port, _ := net.SplitHostPort(brokers)
	p, _ := strconv.Atoi(port)
	b, s, wait := startFaultStream(t, brokers, 300)

	waitAcked(t, s, int64(s.devices*s.n/3))
	kc.Close()
	ackedAtStop := s.acked.Load()
	<-time.After(*outage) // the fault's duration, not synchronisation
	ackedDuringOutage := s.acked.Load() - ackedAtStop
	kc, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(p), kfake.DataDir(dir))
	if err != nil {
		t.Fatalf("restart kafka on %d: %v", p, err)
	}
	t.Cleanup(kc.Close)
	wait()
	if ackedDuringOutage > int64(s.devices) { // at most the publish in flight at the stop
		t.Errorf("%d publishes acknowledged while Kafka was down", ackedDuringOutage)
	}
	dups := s.verify(t, brokers, "telemetry")
	st := b.Stats()[0]
	t.Logf("outage %s: %d acked, %d failed publishes (retried), %d duplicates; stats %+v",
		*outage, s.acked.Load(), s.failed.Load(), dups, st)
	if st.AckedNotInKafka != 0 {
		t.Errorf("acked-not-in-kafka gauge %d in kafka mode", st.AckedNotInKafka)
	}
}

// startHungKafka starts Kafka behind a hangListener, resumed at cleanup
// before Kafka closes.
func startHungKafka(t *testing.T, opts ...kfake.Opt) (*hangListener, *kfake.Cluster) {
	hl := &hangListener{}
	kc := startKafka(t, append(opts, kfake.ListenFn(func(network, address string) (net.Listener, error) {
		ln, err := net.Listen(network, address)
		hl.Listener = ln
		return hl, err
	}))...)
	t.Cleanup(hl.resume) // before kc.Close (cleanups run last-in first-out)
	return hl, kc
}

// hangListener accepts connections whose reads block while hung: Kafka
// accepts and never answers.
type hangListener struct {
	net.Listener
	accepts atomic.Int64 // connections accepted
	mu      sync.Mutex
	hung    chan struct{} // non-nil while hung; closed to resume
}

func (l *hangListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepts.Add(1)
	return &hangConn{Conn: c, l: l}, nil
}

func (l *hangListener) hang() {
	l.mu.Lock()
	l.hung = make(chan struct{})
	l.mu.Unlock()
}

func (l *hangListener) resume() {
	l.mu.Lock()
	if l.hung != nil {
		close(l.hung)
		l.hung = nil
	}
	l.mu.Unlock()
}

type hangConn struct {
	net.Conn
	l *hangListener
}

// Read waits out a hang before reading and again after: bytes that arrive
// while hung (even into a read that began before) are not seen until the
// resume, so nothing sent after hang returns reaches Kafka before resume.
func (c *hangConn) Read(p []byte) (int, error) {
	c.l.wait()
	n, err := c.Conn.Read(p)
	c.l.wait()
	return n, err
}

func (l *hangListener) wait() {
	l.mu.Lock()
	h := l.hung
	l.mu.Unlock()
	if h != nil {
		<-h
	}
}

// Kafka hung mid-stream (connections accepted, no answers): publishers wait
// (no PUBACK while Kafka cannot hold their records) or fail and retry; when
// it answers again everything drains, nothing acknowledged is lost,
// per-key first deliveries stay in order. A probe client proves the wait:
// the PINGREQ it sends after its PUBLISH is answered first, no successful
// PUBACK comes during the hang, and one comes after the resume.
func TestFaultKafkaHung(t *testing.T) {
	hl, kc := startHungKafka(t, kfake.SeedTopics(4, "telemetry", "probe"))
	brokers := kc.ListenAddrs()[0]
	b, s, wait := startFaultStream(t, brokers, 300, config.KafkaRoute{Filter: "probe/+", Topic: "probe"})
	pr := dialProbe(t, s.target())

	waitAcked(t, s, int64(s.devices*s.n/3))
	hl.hang()
	ackedAtHang := s.acked.Load()
	pr.publish(t)
	// The broker answers PINGREQ at once: a PUBACK before it was released
	// without Kafka holding the record.
	if p := pr.next(t); p.Type() != packet.PINGRESP {
		t.Errorf("probe got %v before PINGRESP: its publish was acknowledged while Kafka hangs", p)
	}
	outageEnd := time.After(*outage) // the fault's duration
	var ackedInHang, expired int
	for hung := true; hung; {
		select {
		case p := <-pr.packets:
			switch a, ok := p.(*packet.Ack); {
			case !ok || a.Kind != packet.PUBACK:
			case a.ReasonCode < 0x80:
				ackedInHang++
			default:
				expired++ // the produce timeout: the device is told it failed
			}
		case <-outageEnd:
			hung = false
		}
	}
	ackedDuringOutage := s.acked.Load() - ackedAtHang
	hl.resume()
	if ackedInHang > 0 {
		t.Errorf("probe: %d successful PUBACKs while Kafka hung", ackedInHang)
	}
	// At most the publishes whose records Kafka read just before the hang.
	if ackedDuringOutage > int64(s.devices) {
		t.Errorf("%d stream publishes acknowledged while Kafka hung", ackedDuringOutage)
	}
	if expired > 0 {
		pr.publish(t) // retried as a device does after 0x80
	}
	for {
		if a, ok := pr.next(t).(*packet.Ack); ok && a.Kind == packet.PUBACK {
			if a.ReasonCode >= 0x80 {
				t.Fatalf("probe after the resume: PUBACK 0x%02x", a.ReasonCode)
			}
			break
		}
	}
	wait()
	dups := s.verify(t, brokers, "telemetry")
	t.Logf("hang %s: %d acked (%d during the hang), %d failed publishes (retried), %d duplicates; probe expired %d; stats %+v",
		*outage, s.acked.Load(), ackedDuringOutage, s.failed.Load(), dups, expired, b.Stats()[0])
}

// probe is a raw MQTT 5 client that tells a withheld PUBACK from a prompt
// one: every PUBLISH is followed by a PINGREQ, which the broker answers at
// once, so a PUBACK that comes after the PINGRESP was held.
type probe struct {
	conn    net.Conn
	id      uint16
	packets chan packet.Packet // read by a goroutine until the connection ends
}

func dialProbe(t *testing.T, addr string) *probe {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &probe{conn: conn, packets: make(chan packet.Packet, 16)}
	b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, CleanStart: true, ClientID: "probe", KeepAlive: 0}).Encode(nil, packet.V5)
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.packets)
		for {
			pk, err := packet.ReadPacket(conn, packet.V5, 0)
			if err != nil {
				return
			}
			p.packets <- pk
		}
	}()
	if ca, ok := p.next(t).(*packet.Connack); !ok || ca.ReasonCode != 0 {
		t.Fatalf("probe: %v, want CONNACK 0", ca)
	}
	return p
}

// publish sends a QoS 1 PUBLISH on probe/1 and a PINGREQ in one write.
func (p *probe) publish(t *testing.T) {
	t.Helper()
	p.id++
	b, _ := (&packet.Publish{QoS: 1, PacketID: p.id, Topic: "probe/1", Payload: []byte("probe")}).Encode(nil, packet.V5)
	b, _ = (&packet.Pingreq{}).Encode(b, packet.V5)
	if _, err := p.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// next is the next packet from the broker.
func (p *probe) next(t *testing.T) packet.Packet {
	t.Helper()
	select {
	case pk, ok := <-p.packets:
		if !ok {
			t.Fatal("probe: connection closed")
		}
		return pk
	case <-time.After(waitTimeout):
		t.Fatal("probe: no packet")
		return nil
	}
}
