package broker

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// chunkConn returns at most a few bytes per Read, so every packet arrives
// split at arbitrary points: inside fixed headers, inside bodies, and with
// several packets in one read. It keeps SyscallConn so the peek path runs.
type chunkConn struct {
	*net.TCPConn
	mu  sync.Mutex
	rnd *rand.Rand
	max int
}

func (c *chunkConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	n := 1 + c.rnd.IntN(c.max)
	c.mu.Unlock()
	if n < len(b) {
		b = b[:n]
	}
	return c.TCPConn.Read(b)
}

var _ syscall.Conn = (*chunkConn)(nil)

// TestReaderSegmentation drives the zero-buffer reader with packets split
// at random points and packets larger than the pooled read buffer.
func TestReaderSegmentation(t *testing.T) {
	for _, max := range []int{0, 1, 3, 7, 5000} { // 0: the plain *net.TCPConn (non-blocking reads)
		t.Run("chunk="+strconv.Itoa(max), func(t *testing.T) {
			tb := startBroker(t, Options{AllowAnonymous: true})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				if max == 0 {
					tb.Handle(nc, listener.ConnInfo{Remote: nc.RemoteAddr()})
					return
				}
				cc := &chunkConn{TCPConn: nc.(*net.TCPConn), rnd: rand.New(rand.NewPCG(uint64(max), 1)), max: max}
				tb.Handle(cc, listener.ConnInfo{Remote: nc.RemoteAddr()})
			}()
			t.Cleanup(func() { ln.Close(); <-done })
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := &client{t: t, nc: nc, v: packet.V5}
			t.Cleanup(func() { nc.Close() })
			c.connect("seg")
			c.subscribe(1, "seg/#", 1)
			// Write every publish at once: the reader sees one stream.
			var stream []byte
			sizes := []int{0, 1, 100, 4090, 4096, 9000, 3, 70000}
			for i, n := range sizes {
				p := &packet.Publish{Topic: "seg/" + strconv.Itoa(i), Payload: make([]byte, n), QoS: 1, PacketID: uint16(i + 1)}
				for j := range p.Payload {
					p.Payload[j] = byte(i + j)
				}
				stream, _ = p.Encode(stream, packet.V5)
			}
			stream, _ = (&packet.Pingreq{}).Encode(stream, packet.V5)
			c.write(stream)
			acks, pubs, pong := 0, 0, false
			for acks < len(sizes) || pubs < len(sizes) || !pong {
				switch p := c.expectAny().(type) {
				case *packet.Pingresp:
					pong = true
				case *packet.Ack:
					acks++
				case *packet.Publish:
					i, _ := strconv.Atoi(p.Topic[4:])
					if len(p.Payload) != sizes[i] || (len(p.Payload) > 0 && p.Payload[len(p.Payload)-1] != byte(i+len(p.Payload)-1)) {
						t.Fatalf("publish %d corrupt: %d bytes", i, len(p.Payload))
					}
					c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
					pubs++
				}
			}
		})
	}
}

func (c *client) expectAny() packet.Packet {
	c.t.Helper()
	p, err := c.read(waitTime)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}
