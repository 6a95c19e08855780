package listener

import (
	"bytes"
	"fmt"
	"io"
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

// TestWebSocketSourceResumes: with a source that finds nothing between any
// two bytes (a parked reader's non-blocking socket read), Read returns that
// error as it is and goes on where it stopped: in a frame header, an
// extended length, a payload or a control frame.
func TestWebSocketSourceResumes(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789"), 30) // a 16-bit extended length
	var stream []byte
	stream = append(stream, clientFrame(0x82, []byte("hello"), true)...)
	stream = append(stream, clientFrame(0x89, []byte("are you there"), true)...) // ping
	stream = append(stream, clientFrame(0x02, []byte("wor"), true)...)           // fragmented
	stream = append(stream, clientFrame(0x80, []byte("ld"), true)...)
	stream = append(stream, clientFrame(0x82, long, true)...)
	stream = append(stream, clientFrame(0x88, []byte{0x03, 0xe8}, true)...) // close 1000
	want := append([]byte("helloworld"), long...)

	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		fc := &fakeConn{}
		c := &wsConn{conn: fc}
		src := bytes.NewReader(stream)
		empty := false
		c.SetSource(func(p []byte) (int, error) {
			if empty = !empty; empty {
				return 0, errNothing
			}
			return src.Read(p[:min(len(p), 1+r.IntN(3))])
		})
		var got []byte
		buf := make([]byte, 8)
		for {
			n, err := c.Read(buf[:1+r.IntN(len(buf))])
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil && err != errNothing {
				t.Fatalf("after %q: %v", got, err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("read %q, want %q", got, want)
		}
		op, payload := readServerFrame(t, &fc.w)
		if op != opPong || string(payload) != "are you there" {
			t.Fatalf("answer to ping: opcode %#x %q", op, payload)
		}
		if op, payload = readServerFrame(t, &fc.w); op != opClose || !bytes.Equal(payload, []byte{0x03, 0xe8}) {
			t.Fatalf("answer to close: opcode %#x %x", op, payload)
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
