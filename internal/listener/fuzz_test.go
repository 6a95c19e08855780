package listener

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzProxyHeader: the PROXY header parser never panics, never reads past
// the header it accepts, and a v1 header it accepts fits in 107 bytes.
func FuzzProxyHeader(f *testing.F) {
	for _, tc := range proxyCases {
		f.Add(tc.header)
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nrest"))
	f.Add(append(proxyV2(1, src4, dst4, nil)[:14], 0xff, 0xff))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := readProxyHeader(r)
		if err != nil {
			return
		}
		used := len(in) - r.Len()
		if bytes.HasPrefix(in, []byte("PROXY ")) {
			if used > proxyV1Max || !bytes.HasSuffix(in[:used], []byte("\r\n")) {
				t.Fatalf("v1 header of %d bytes accepted: %q", used, in[:used])
			}
		}
		if (h.src == nil) != (h.dst == nil) {
			t.Fatalf("half an address pair: %v -> %v", h.src, h.dst)
		}
	})
}

// fakeConn is a net.Conn that reads from a byte slice and records writes.
type fakeConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzWebSocketRead: the frame reader never panics, yields no more payload
// than it was given, writes only well-formed server frames, and ends every
// stream with an error rather than spinning.
func FuzzWebSocketRead(f *testing.F) {
	f.Add([]byte{}, uint8(7))
	f.Add(clientFrame(0x82, []byte("\x10\x00"), true), uint8(1))
	f.Add(append(clientFrame(0x02, []byte("ab"), true), clientFrame(0x80, []byte("cd"), true)...), uint8(3))
	f.Add(append(clientFrame(0x89, []byte("ping"), true), clientFrame(0x82, make([]byte, 300), true)...), uint8(64))
	f.Add(clientFrame(0x88, []byte{0x03, 0xe8}, true), uint8(2))
	f.Add(clientFrame(0x82, []byte("x"), false), uint8(2))
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, uint8(9))
	f.Fuzz(func(t *testing.T, in []byte, bufSize uint8) {
		fc := &fakeConn{r: bytes.NewReader(in)}
		c := &wsConn{conn: fc}
		buf := make([]byte, int(bufSize)%64+1)
		total := 0
		var err error
		for i := 0; err == nil; i++ {
			if i > len(in)+2 {
				t.Fatal("Read keeps returning without error or progress")
			}
			var n int
			n, err = c.Read(buf)
			total += n
		}
		if total > len(in) {
			t.Fatalf("read %d payload bytes from %d input bytes", total, len(in))
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errWSProtocol) {
			t.Fatalf("unexpected error %v", err)
		}
		if _, err2 := c.Read(buf); err2 == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Read after %v succeeded", err)
		}
		// Every reply is a complete server frame: pongs, then at most one close.
		out := fc.w.Bytes()
		for len(out) > 0 {
			if len(out) < 2 || out[1]&0x80 != 0 || int(out[1]) > 125 || len(out) < 2+int(out[1]) {
				t.Fatalf("malformed server frame % x", out)
			}
			op := out[0] & 0x0f
			out = out[2+int(out[1]):]
			if op == opClose && len(out) > 0 {
				t.Fatal("frames after close")
			}
		}
	})
}

// FuzzWebSocketSource: reading through a source that finds nothing at
// arbitrary points (a parked reader's socket) yields the same payload, the
// same answers and the same end as reading the stream straight.
func FuzzWebSocketSource(f *testing.F) {
	f.Add(clientFrame(0x82, []byte("\x10\x00"), true), uint64(1))
	f.Add(append(clientFrame(0x89, []byte("ping"), true), clientFrame(0x82, make([]byte, 300), true)...), uint64(0xdeadbeef))
	f.Add(append(clientFrame(0x02, []byte("ab"), true), clientFrame(0x80, []byte("cd"), true)...), uint64(7))
	f.Add(clientFrame(0x88, []byte{0x03, 0xe8}, true), uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, pattern uint64) {
		read := func(c *wsConn) (payload []byte, end error) {
			buf := make([]byte, 16)
			for i := 0; ; i++ {
				if i > 4*len(in)+130 {
					t.Fatal("Read keeps returning without an end")
				}
				n, err := c.Read(buf)
				payload = append(payload, buf[:n]...)
				if err != nil && err != errNothing {
					return payload, err
				}
			}
		}
		straight := &fakeConn{r: bytes.NewReader(in)}
		want, wantEnd := read(&wsConn{conn: straight})

		parked := &fakeConn{}
		c := &wsConn{conn: parked}
		src, bits, empty := bytes.NewReader(in), pattern, false
		c.SetSource(func(p []byte) (int, error) {
			bits = bits>>1 | bits<<63
			if empty = bits&1 != 0 && !empty; empty { // never twice in a row
				return 0, errNothing
			}
			return src.Read(p[:min(len(p), 1+int(bits>>1&7))])
		})
		got, gotEnd := read(c)
		if !bytes.Equal(got, want) {
			t.Fatalf("payload %x, straight %x", got, want)
		}
		if !bytes.Equal(parked.w.Bytes(), straight.w.Bytes()) {
			t.Fatalf("answers % x, straight % x", parked.w.Bytes(), straight.w.Bytes())
		}
		if gotEnd.Error() != wantEnd.Error() {
			t.Fatalf("ended with %v, straight with %v", gotEnd, wantEnd)
		}
	})
}

var errNothing = errors.New("nothing yet")
