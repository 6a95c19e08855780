//go:build linux

package netpoll

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// idle is a Handler that reads nothing: the test writes to its connection.
type idle struct{ c *Conn }

func (h *idle) Step() error {
	var b [64]byte
	_, err := h.c.Read(b[:])
	return err
}
func (h *idle) Expired() error { return errIdle }
func (h *idle) Closed(error)   { h.c.Close() }
func (h *idle) Drained()       {}

// openPair opens one end of a loopback connection on e and returns it
// with the other end.
func openPair(t *testing.T, e *Engine) (*Conn, net.Conn) {
	t.Helper()
	nc, client := tcpPair(t)
	h := &idle{}
	if h.c = e.Open(nc, h); h.c == nil {
		t.Fatal("engine refused the connection")
	}
	go h.c.Start(time.Minute)
	return h.c, client
}

// TestBatchWrite: Batch.Write writes what the batch holds on the calling
// goroutine (the queue is empty when it returns); a socket that cannot
// take it all gets the rest from a flush goroutine, and nothing is lost.
func TestBatchWrite(t *testing.T) {
	e := New(Config{MaxQueued: 64 << 20, WriteTimeout: 10 * time.Second})
	c, client := openPair(t, e)
	defer stopEngine(t, e, []net.Conn{client})

	var b Batch
	c.Enqueue([]byte("one "), []byte("two"), false, &b)
	c.wmu.Lock()
	held := c.wbytes
	c.wmu.Unlock()
	if held != 7 || len(b.conns) != 1 {
		t.Fatalf("before Write: %d bytes queued, %d connections in the batch; want 7 and 1", held, len(b.conns))
	}
	b.Write()
	c.wmu.Lock()
	held, flushing := c.wbytes, c.flushing
	c.wmu.Unlock()
	if held != 0 || flushing || len(b.conns) != 0 {
		t.Fatalf("after Write: %d bytes queued, flushing %v, %d in the batch; want all written here", held, flushing, len(b.conns))
	}
	client.SetReadDeadline(time.Now().Add(waitTime))
	got := make([]byte, 7)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "one two" {
		t.Fatalf("read %q, %v", got, err)
	}

	// More than the socket takes while the client does not read.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	c.Enqueue(big, nil, false, &b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Write() // must not wait for the client
	}()
	select {
	case <-done:
	case <-time.After(waitTime):
		t.Fatal("Write waited for the socket")
	}
	got = make([]byte, len(big))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big write: %v, equal %v", err, bytes.Equal(got, big))
	}
}
