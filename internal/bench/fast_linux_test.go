package bench

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// fastPair returns a fastConn dialled to a loopback listener and the
// accepted end.
func fastPair(t *testing.T) (*fastConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := fast(nc).(*fastConn)
	if !ok {
		t.Fatalf("fast(%T) is not a fastConn", nc)
	}
	t.Cleanup(func() { f.Close(); peer.Close() })
	return f, peer
}

func TestFastConnReadWrite(t *testing.T) {
	f, peer := fastPair(t)
	want := bytes.Repeat([]byte("culex"), 1<<18) // larger than the socket buffers
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(want))))
		got <- b
	}()
	// An expired deadline from an earlier full socket must not fail a write.
	f.SetWriteDeadline(time.Now().Add(-time.Second))
	if err := f.writeTimed(want, 10*time.Second); err != nil {
		t.Fatalf("writeTimed: %v", err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, not the %d written", len(b), len(want))
	}

	if _, err := peer.Write([]byte("ack")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := f.Read(buf)
	if err != nil || string(buf[:n]) != "ack" {
		t.Fatalf("Read = %q, %v; want \"ack\"", buf[:n], err)
	}

	// A read with nothing to read waits, under the read deadline.
	f.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := f.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read on an idle socket past its deadline: %v", err)
	}
	f.SetReadDeadline(time.Time{})

	peer.Close()
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want io.EOF", n, err)
	}
}

// A peer that reads nothing fails a write once the socket is full for the
// timeout.
func TestFastConnWriteTimeout(t *testing.T) {
	f, _ := fastPair(t)
	big := make([]byte, 64<<20)
	start := time.Now()
	err := f.writeTimed(big, 200*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writeTimed to a peer that never reads: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the timeout took %v", d)
	}
}
