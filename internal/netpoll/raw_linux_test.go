package netpoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection, closed at the
// end of the test.
func tcpPair(t *testing.T) (nc *net.TCPConn, peer net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	peer, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	return c.(*net.TCPConn), peer
}

// TestWritev writes more slices than one writev takes and more bytes than
// the socket buffers hold, to a reader that takes its time, and checks the
// stream and the consumed buffers; then a write deadline on a reader that
// stopped ends the write with a timeout.
func TestWritev(t *testing.T) {
	nc, peer := tcpPair(t)
	raw, err := nc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}

	var want []byte
	var bufs net.Buffers
	for i := 0; i < 3000; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 1+i%700)
		if i%10 == 0 {
			b = nil // empty slices are skipped
		}
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	got := make(chan []byte)
	go func() {
		var all []byte
		buf := make([]byte, 1000) // small reads: the writer waits for room
		for len(all) < len(want) {
			n, err := peer.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- all
	}()
	n, err := Writev(raw, &bufs, true)
	if err != nil || n != int64(len(want)) || len(bufs) != 0 {
		t.Fatalf("writev: %d of %d bytes, %d slices left, %v", n, len(want), len(bufs), err)
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("stream differs")
	}

	// Nobody reads now: the deadline ends the write.
	big := net.Buffers{make([]byte, 64<<20)}
	nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err = Writev(raw, &big, true)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() || n == 0 || n == 64<<20 {
		t.Fatalf("stalled writev: %d bytes, %v", n, err)
	}
}

// TestWriteAllAfterExpiredDeadline: a write deadline left over from an
// earlier slow batch has expired; the next batch's first, deadline-free
// attempt fails with it, and writeAll goes on under a fresh deadline.
func TestWriteAllAfterExpiredDeadline(t *testing.T) {
	nc, peer := tcpPair(t)
	c := &Conn{e: New(Config{}), nc: nc}
	c.raw, _ = nc.SyscallConn()
	nc.SetWriteDeadline(time.Unix(1, 0))
	if err := c.writeAll([][]byte{[]byte("hello "), []byte("world")}, time.Second); err != nil {
		t.Fatalf("writeAll: %v", err)
	}
	buf := make([]byte, 11)
	peer.SetReadDeadline(time.Now().Add(waitTime))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "hello world" {
		t.Fatalf("read %q, %v", buf, err)
	}
}
