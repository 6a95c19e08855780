package listener

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestUnmaskSplits: unmasking in arbitrary pieces matches the byte-at-a-time
// definition of RFC 6455 section 5.3.
func TestUnmaskSplits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		key := [4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}
		data := make([]byte, r.IntN(100))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		want := make([]byte, len(data))
		for i, b := range data {
			want[i] = b ^ key[i%4]
		}
		c := &wsConn{mask: key}
		got := bytes.Clone(data)
		for rest := got; len(rest) > 0; {
			n := 1 + r.IntN(len(rest))
			c.unmask(rest[:n])
			rest = rest[n:]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("key %x, %d bytes: got %x, want %x", key, len(data), got, want)
		}
	}
}

// loopConn replays a stream of frames forever.
type loopConn struct {
	fakeConn
	data []byte
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

func BenchmarkWebSocketRead(b *testing.B) {
	for _, size := range []int{16, 1024, 60 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			c := &wsConn{conn: &loopConn{data: clientFrame(0x82, make([]byte, size), true)}}
			buf := make([]byte, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				for left := size; left > 0; {
					n, err := c.Read(buf[:min(len(buf), left)])
					if err != nil {
						b.Fatal(err)
					}
					left -= n
				}
			}
		})
	}
}

func BenchmarkWebSocketWrite(b *testing.B) {
	for _, size := range []int{16, 1024, 64 << 10} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			c := &wsConn{conn: &discardConn{}}
			p := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := c.WriteBuffers([][]byte{p[:2], p[2:]}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardConn struct{ fakeConn }

func (*discardConn) Write(p []byte) (int, error) { return len(p), nil }
