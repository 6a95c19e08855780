package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// BenchmarkCrossNodeQoS0 and BenchmarkCrossNodeQoS1 measure fan-in 10:1
// (ten publishers on bench/<i>, one subscriber on bench/#, 64 B) through
// two nodes in this process, the subscriber on the publishers' node
// (local) or on the other one (cross). An op is one delivered message;
// cpu-ns/msg is the process's CPU time per message, the raw clients'
// (small, the same in both) included. At QoS 1 each publisher has 32
// publishes in flight, as `culex bench` does; at QoS 0 at most window
// messages are between the publishers and the subscriber, so nothing is
// dropped.
func BenchmarkCrossNodeQoS0(b *testing.B) { benchCrossNode(b, 0) }
func BenchmarkCrossNodeQoS1(b *testing.B) { benchCrossNode(b, 1) }

func benchCrossNode(b *testing.B, qos byte) {
	ns := startNodes(b, 2)
	run := 0
	for _, where := range []string{"local", "cross"} {
		b.Run(where, func(b *testing.B) {
			run++
			sn := ns[0]
			if where == "cross" {
				sn = ns[1]
			}
			var cpu0 int64
			fanIn(b, ns[0], sn, qos, run, b.N, func() {
				b.ReportAllocs()
				cpu0 = cpuTime()
				b.ResetTimer()
			}, func() {
				b.StopTimer()
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/msg")
			})
		})
	}
}

var benchPubs, benchInflight = envInt("CULEX_BENCH_PUBS", 10), envInt("CULEX_BENCH_INFLIGHT", 32)

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

// fanIn sends total messages from benchPubs publishers on pn to one
// subscriber of bench/# on sn. started runs once every client is
// connected, before the first publish; received once the subscriber has
// every message.
func fanIn(tb testing.TB, pn, sn *node, qos byte, run, total int, started, received func()) {
	sub := dialRaw(tb, sn.addr, fmt.Sprintf("sub-%d", run))
	sub.subscribe(tb, "bench/#", qos)
	if pn != sn {
		waitFor(tb, func() bool { _, ok := pn.peerFilters(sn.r.node)["bench/#"]; return ok })
	}
	win := newWindow(20000)
	pubs := make([]*rawClient, benchPubs)
	for i := range pubs {
		pubs[i] = dialRaw(tb, pn.addr, fmt.Sprintf("pub-%d-%d", run, i))
	}
	var wg sync.WaitGroup
	started()
	for i, pc := range pubs {
		n := total / benchPubs
		if i < total%benchPubs {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc.publishN(tb, "bench/"+strconv.Itoa(i), qos, n, win)
		}()
	}
	var acks []byte
	sub.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got := 0; got < total; {
		typ, pid, err := sub.next()
		if err != nil {
			tb.Fatalf("subscriber: %v after %d of %d messages", err, got, total)
		}
		if typ != packet.PUBLISH {
			continue
		}
		got++
		if qos > 0 {
			acks = append(acks, byte(packet.PUBACK)<<4, 2, byte(pid>>8), byte(pid))
		} else {
			win.release(1)
		}
		if sub.r.Buffered() == 0 && len(acks) > 0 {
			sub.nc.Write(acks)
			acks = acks[:0]
		}
	}
	received()
	wg.Wait()
	for _, pc := range pubs {
		pc.nc.Close()
	}
	sub.nc.Close()
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// window counts messages that may still be sent.
type window struct {
	mu    sync.Mutex
	c     sync.Cond
	avail int
}

func newWindow(n int) *window {
	w := &window{avail: n}
	w.c.L = &w.mu
	return w
}

// take waits for at least one and takes up to n.
func (w *window) take(n int) int {
	w.mu.Lock()
	for w.avail == 0 {
		w.c.Wait()
	}
	n = min(n, w.avail)
	w.avail -= n
	w.mu.Unlock()
	return n
}

func (w *window) release(n int) {
	w.mu.Lock()
	w.avail += n
	w.mu.Unlock()
	w.c.Signal()
}

// rawClient is an MQTT 3.1.1 client that reads without allocating.
type rawClient struct {
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(tb testing.TB, addr, id string) *rawClient {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c := &rawClient{nc: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	wire, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V311, CleanStart: true, ClientID: id}).Encode(nil, packet.V311)
	nc.Write(wire)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := packet.ReadPacket(c.r, packet.V311, 0); err != nil || p.(*packet.Connack).ReasonCode != 0 {
		tb.Fatalf("connect %s: %v %+v", id, err, p)
	}
	return c
}

func (c *rawClient) subscribe(tb testing.TB, filter string, qos byte) {
	wire, _ := (&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}}).Encode(nil, packet.V311)
	c.nc.Write(wire)
	if _, err := packet.ReadPacket(c.r, packet.V311, 0); err != nil {
		tb.Fatal(err)
	}
}

// next reads one packet: its type and, for a QoS 1 PUBLISH or a PUBACK,
// its packet id.
func (c *rawClient) next() (packet.Type, uint16, error) {
	h, rl, err := c.header()
	if err != nil {
		return 0, 0, err
	}
	typ := packet.Type(h >> 4)
	var pid uint16
	switch {
	case typ == packet.PUBACK:
		p, err := c.r.Peek(2)
		if err != nil {
			return 0, 0, err
		}
		pid = binary.BigEndian.Uint16(p)
	case typ == packet.PUBLISH && h>>1&3 > 0:
		p, err := c.r.Peek(2)
		if err != nil {
			return 0, 0, err
		}
		tl := int(binary.BigEndian.Uint16(p))
		if p, err = c.r.Peek(2 + tl + 2); err != nil {
			return 0, 0, err
		}
		pid = binary.BigEndian.Uint16(p[2+tl:])
	}
	_, err = c.r.Discard(rl)
	return typ, pid, err
}

// header reads a fixed header: its first byte and remaining length.
func (c *rawClient) header() (h byte, rl int, err error) {
	if h, err = c.r.ReadByte(); err != nil {
		return 0, 0, err
	}
	for shift := 0; ; shift += 7 {
		d, err := c.r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		rl |= int(d&0x7f) << shift
		if d < 0x80 {
			return h, rl, nil
		}
	}
}

// nextTopic reads up to the next PUBLISH and returns its topic.
func (c *rawClient) nextTopic() (string, error) {
	for {
		h, rl, err := c.header()
		if err != nil {
			return "", err
		}
		var topic string
		if packet.Type(h>>4) == packet.PUBLISH {
			p, err := c.r.Peek(2)
			if err != nil {
				return "", err
			}
			if p, err = c.r.Peek(2 + int(binary.BigEndian.Uint16(p))); err != nil {
				return "", err
			}
			topic = string(p[2:])
		}
		if _, err := c.r.Discard(rl); err != nil {
			return "", err
		}
		if topic != "" {
			return topic, nil
		}
	}
}

// ackAll reads and acknowledges until the connection fails.
func (c *rawClient) ackAll() {
	var acks []byte
	for {
		typ, pid, err := c.next()
		if err != nil {
			return
		}
		if typ == packet.PUBLISH {
			acks = append(acks, byte(packet.PUBACK)<<4, 2, byte(pid>>8), byte(pid))
		}
		if c.r.Buffered() == 0 && len(acks) > 0 {
			c.nc.Write(acks)
			acks = acks[:0]
		}
	}
}

// publishAcked publishes n QoS 1 messages on topic, at most 32 in flight,
// and returns once each has its PUBACK.
func (c *rawClient) publishAcked(topic string, n int) error {
	one, _ := (&packet.Publish{Topic: topic, QoS: 1, PacketID: 1, Payload: make([]byte, 64)}).Encode(nil, packet.V311)
	pidAt := len(one) - 64 - 2
	win := newWindow(32)
	errc := make(chan error, 1)
	go func() {
		for got := 0; got < n; {
			typ, _, err := c.next()
			if err != nil {
				errc <- fmt.Errorf("%s: %d of %d PUBACKs: %w", topic, got, n, err)
				c.nc.Close()
				win.release(n) // the writer stops at its next write
				return
			}
			if typ == packet.PUBACK {
				got++
				win.release(1)
			}
		}
		errc <- nil
	}()
	var buf []byte
	for pid := 1; pid <= n; {
		buf = buf[:0]
		for k := win.take(n - pid + 1); k > 0; k-- {
			binary.BigEndian.PutUint16(one[pidAt:], uint16(pid))
			buf = append(buf, one...)
			pid++
		}
		if _, err := c.nc.Write(buf); err != nil {
			break
		}
	}
	return <-errc
}

// publishN publishes n messages on topic, at QoS 1 with at most 32 in
// flight, at QoS 0 within win.
func (c *rawClient) publishN(tb testing.TB, topic string, qos byte, n int, win *window) {
	one, _ := (&packet.Publish{Topic: topic, QoS: qos, PacketID: 1, Payload: make([]byte, 64)}).Encode(nil, packet.V311)
	pidAt := len(one) - 64 - 2
	if qos > 0 {
		win = newWindow(benchInflight)
		go func() {
			c.nc.SetReadDeadline(time.Now().Add(time.Minute))
			for got := 0; got < n; {
				typ, _, err := c.next()
				if err != nil {
					return
				}
				if typ == packet.PUBACK {
					got++
					win.release(1)
				}
			}
		}()
	}
	buf := make([]byte, 0, 64*len(one))
	pid := uint16(0)
	for sent := 0; sent < n; {
		k := win.take(min(64, n-sent))
		buf = buf[:0]
		for range k {
			if pid++; pid == 0 {
				pid = 1
			}
			if qos > 0 {
				binary.BigEndian.PutUint16(one[pidAt:], pid)
			}
			buf = append(buf, one...)
		}
		if _, err := c.nc.Write(buf); err != nil {
			return
		}
		sent += k
	}
}
