package listener

import (
	"bytes"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"

	"github.com/culexmq/culex/internal/testcert"
)

// recordWriter records each Write it gets, as a TLS connection makes a
// record of each.
type recordWriter struct{ writes [][]byte }

func (w *recordWriter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(b))
	return len(b), nil
}

// WriteGathered makes one Write of a queue of small packets, and Writes of
// at most a record's worth (TLSChunk) of a large queue, in order.
func TestWriteGathered(t *testing.T) {
	small := net.Buffers{[]byte{0x30, 5}, []byte("a/b"), []byte("xy"), []byte{0x40, 2, 0, 1}}
	var w recordWriter
	want := bytes.Join(small, nil)
	bufs := append(net.Buffers(nil), small...)
	if n, err := WriteGathered(&w, &bufs); err != nil || n != int64(len(want)) || len(bufs) != 0 {
		t.Fatalf("WriteGathered = %d, %v, %d slices left; want %d, nil, 0", n, err, len(bufs), len(want))
	}
	if len(w.writes) != 1 || !bytes.Equal(w.writes[0], want) {
		t.Fatalf("writes %q, want one write %q", w.writes, want)
	}

	var large net.Buffers
	for i := range 40 {
		large = append(large, []byte{byte(i)}, bytes.Repeat([]byte{byte(i)}, 1500))
	}
	want = bytes.Join(large, nil)
	w = recordWriter{}
	if n, err := WriteGathered(&w, &large); err != nil || n != int64(len(want)) || len(large) != 0 {
		t.Fatalf("WriteGathered = %d, %v, %d slices left; want %d, nil, 0", n, err, len(large), len(want))
	}
	if got := bytes.Join(w.writes, nil); !bytes.Equal(got, want) {
		t.Fatal("the writes are not the queue in order")
	}
	for i, b := range w.writes {
		if len(b) > TLSChunk || (i < len(w.writes)-1 && len(b) != TLSChunk) {
			t.Fatalf("write %d of %d is %d bytes; want full records of %d", i, len(w.writes), len(b), TLSChunk)
		}
	}
}

// countConn counts the writes made to it: beneath a tls.Conn, its records.
type countConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// A WebSocket frame larger than one record, over TLS, goes out in full
// records rather than a record per slice, and arrives whole.
func TestWSSLargeFrameRecords(t *testing.T) {
	ca := testcert.NewCA(t, "culex test CA")
	a, b := net.Pipe()
	counted := &countConn{Conn: a}
	// Without dynamic record sizing, which keeps the first 128 KiB of a
	// connection in records of about one TCP segment whatever Write gets.
	srv := tls.Server(counted, &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1")},
		DynamicRecordSizingDisabled: true})
	cli := tls.Client(b, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	defer a.Close() // not the tls.Conns: their close_notify would wait on the pipe
	defer b.Close()
	go cli.Handshake()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := &wsConn{conn: srv}
	const size = 70000
	got := make(chan []byte, 1)
	go func() {
		_, p := readServerFrame(t, cli)
		got <- p
	}()
	before := counted.writes.Load()
	slices := [][]byte{[]byte("\x30\x05")}
	for range 7 {
		slices = append(slices, bytes.Repeat([]byte{'z'}, size/7))
	}
	if n, err := c.WriteBuffers(slices); err != nil || n != size+2 {
		t.Fatalf("WriteBuffers = %d, %v", n, err)
	}
	if p := <-got; len(p) != size+2 || string(p[:2]) != "\x30\x05" {
		t.Fatalf("frame payload of %d bytes", len(p))
	}
	if records, want := counted.writes.Load()-before, int32((size+2+10+TLSChunk-1)/TLSChunk); records > want {
		t.Fatalf("%d records for a %d-byte frame; want %d", records, size, want)
	}
}
