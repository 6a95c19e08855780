package broker

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// discardConn is a net.Conn that accepts every write and never reads.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) RemoteAddr() net.Addr             { return nil }
func (discardConn) LocalAddr() net.Addr              { return nil }
func (discardConn) Read(b []byte) (int, error)       { select {} }

// fakeSession attaches a connected session writing to a discardConn.
func fakeSession(b *Broker, id string, v packet.Version) (*session, *conn) {
	c := &conn{b: b, recvMax: 65535, problem: true, version: v, state: stateConnected}
	b.mu.Lock()
	c.sock = b.engineLocked().Open(discardConn{}, c)
	b.mu.Unlock()
	c.info = &ClientInfo{ClientID: id, Version: v}
	s := newSession(b, id)
	s.conn, s.info, s.version = c, c.info, v
	s.online.Store(true)
	c.sess = s
	b.sessions[id] = s
	return s, c
}

// BenchmarkRoute measures one routing pass to subs connected subscribers
// (v3.1.1 and v5 alternating), including encoding and queueing to their
// connections and, for QoS 1, the PUBACK of every copy.
func BenchmarkRoute(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("qos=%d/subs=%d", qos, n), func(b *testing.B) {
				cfg := testConfig()
				cfg.MaxInflight = 0
				br, err := New(Options{Config: cfg})
				if err != nil {
					b.Fatal(err)
				}
				defer br.store.Close()
				var ss []*session
				var cs []*conn
				for i := 0; i < n; i++ {
					v := packet.V311
					if i%2 == 1 {
						v = packet.V5
					}
					s, c := fakeSession(br, "s"+strconv.Itoa(i), v)
					br.subs.Subscribe("bench/+/x", s, subOpts{QoS: qos})
					ss, cs = append(ss, s), append(cs, c)
				}
				m := &Message{Topic: "bench/a/x", Payload: make([]byte, 64), QoS: qos}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					br.route(m, nil)
					if qos > 0 {
						for j, s := range ss {
							s.onPuback(cs[j], s.nextPID)
						}
					}
				}
				b.StopTimer()
				br.wg.Wait()
			})
		}
	}
}

// TestIdleConnMemory opens idleConns connected, subscribed, idle clients
// from a child process and reports the broker's heap and stack per
// connection. The target is about 4 KiB.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() || os.Getenv("CULEX_IDLE_CHILD") != "" {
		t.Skip("measurement")
	}
	const idleConns = 2000
	if os.Getenv("CULEX_IDLE_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	tb := startBroker(t, Options{AllowAnonymous: true})
	before, beforeStack := memNow()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$", "-test.v")
	cmd.Env = append(os.Environ(), "CULEX_IDLE_CHILD="+tb.ln.Addr().String(), "CULEX_IDLE_N="+strconv.Itoa(idleConns))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	buf := make([]byte, 1)
	for string(buf) != "R" { // the child prints R when every client is connected
		if _, err := stdout.Read(buf); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	eventually(t, "connections", func() bool { return tb.Stats().ClientsConnected == idleConns })
	after, afterStack := memNow()
	if f := os.Getenv("CULEX_IDLE_HEAPPROFILE"); f != "" {
		out, _ := os.Create(f)
		pprof.WriteHeapProfile(out)
		out.Close()
	}
	per := float64(after-before) / idleConns
	t.Logf("idle connections: %d; heap+stack per connection: %.0f bytes (stack %.0f, heap %.0f)", idleConns, per,
		float64(afterStack-beforeStack)/idleConns, float64(after-afterStack-before+beforeStack)/idleConns)
	if per > 4<<10 {
		t.Errorf("%.0f bytes per idle connection", per)
	}
	// All disconnect at once: what the teardown allocates.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	alloc := ms.TotalAlloc
	if f := os.Getenv("CULEX_IDLE_HEAPPROFILE"); f != "" {
		out, _ := os.Create(f + ".base")
		pprof.Lookup("allocs").WriteTo(out, 0)
		out.Close()
	}
	stdin.Close()
	eventually(t, "disconnections", func() bool { return tb.Stats().ClientsConnected == 0 })
	runtime.ReadMemStats(&ms)
	if f := os.Getenv("CULEX_IDLE_HEAPPROFILE"); f != "" {
		runtime.GC()
		runtime.GC()
		out, _ := os.Create(f + ".teardown")
		pprof.Lookup("allocs").WriteTo(out, 0)
		out.Close()
	}
	t.Logf("disconnect storm: %.0f bytes allocated per connection", float64(ms.TotalAlloc-alloc)/idleConns)
}

// memNow returns heap+stack in use and the stack part, after two GCs.
func memNow() (total, stack int64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse), int64(ms.StackInuse)
}

// TestIdleClients is the child of TestIdleConnMemory: it connects N clients
// (each subscribes to one filter) and holds them until stdin closes.
func TestIdleClients(t *testing.T) {
	addr := os.Getenv("CULEX_IDLE_CHILD")
	if addr == "" {
		t.Skip("child process of TestIdleConnMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("CULEX_IDLE_N"))
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := &client{t: t, nc: nc, v: packet.V311}
		c.connect("idle-" + strconv.Itoa(i))
		c.subscribe(1, "idle/"+strconv.Itoa(i), 1)
		nc.SetReadDeadline(time.Time{})
		conns = append(conns, nc)
	}
	os.Stdout.WriteString("R")
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
	for _, c := range conns {
		c.Close()
	}
}

// BenchmarkInboundPublish measures one inbound PUBLISH from the reader's
// exact-size body copy through decode, validation, routing to subs
// subscribers and (QoS 1) the PUBACK.
func BenchmarkInboundPublish(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, n := range []int{0, 10} {
			b.Run(fmt.Sprintf("qos=%d/subs=%d", qos, n), func(b *testing.B) {
				br, err := New(Options{Config: testConfig()})
				if err != nil {
					b.Fatal(err)
				}
				defer br.store.Close()
				for i := 0; i < n; i++ {
					s, _ := fakeSession(br, "s"+strconv.Itoa(i), packet.V5)
					br.subs.Subscribe("bench/+/x", s, subOpts{QoS: 0})
				}
				_, c := fakeSession(br, "pub", packet.V5)
				wire, _ := (&packet.Publish{Topic: "bench/a/x", Payload: make([]byte, 64), QoS: qos, PacketID: 1}).Encode(nil, packet.V5)
				fh, hl, err := packet.ParseFixedHeader(wire)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					body := make([]byte, fh.Remaining)
					copy(body, wire[hl:])
					if err := c.handle(fh, body); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				br.wg.Wait()
			})
		}
	}
}

// BenchmarkPubSub sends b.N PUBLISHes over loopback TCP from one client to
// one subscriber through the broker (reader, worker, routing, writer).
func BenchmarkPubSub(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos=%d/size=64", qos), func(b *testing.B) {
			tb := startBroker(b, Options{AllowAnonymous: true})
			sub := tb.connect("sub", packet.V311)
			sub.subscribe(1, "bench", qos)
			pub := tb.connect("pub", packet.V311)
			payload := make([]byte, 64)
			var wire []byte
			for i := 0; i < 100; i++ {
				wire, _ = (&packet.Publish{Topic: "bench", Payload: payload, QoS: qos, PacketID: uint16(i%1000 + 1)}).Encode(wire, packet.V311)
			}
			per := len(wire) / 100
			b.SetBytes(int64(per))
			b.ReportAllocs()
			b.ResetTimer()
			// At most window messages between publisher and subscriber, as a
			// client's in-flight limit would do: no drops, no queue growth.
			const window = 1000
			tokens := make(chan struct{}, window)
			go func() {
				for sent := 0; sent < b.N; sent += 100 {
					n := min(100, b.N-sent)
					for range n {
						tokens <- struct{}{}
					}
					pub.nc.Write(wire[:n*per])
				}
			}()
			if qos > 0 {
				go func() { // drain the publisher's PUBACKs
					r := bufio.NewReader(pub.nc)
					for got := 0; got < b.N; got++ {
						if _, err := packet.ReadPacket(r, packet.V311, 0); err != nil {
							return
						}
					}
				}()
			}
			sub.nc.SetReadDeadline(time.Now().Add(time.Minute))
			r := bufio.NewReader(sub.nc)
			for got := 0; got < b.N; got++ {
				p, err := packet.ReadPacket(r, packet.V311, 0)
				if err != nil {
					b.Fatalf("after %d: %v", got, err)
				}
				<-tokens
				if qos > 0 {
					sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.(*packet.Publish).PacketID})
				}
			}
		})
	}
}
