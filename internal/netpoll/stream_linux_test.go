package netpoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// streamPipe is a loopback TCP connection made Streams on both ends.
func streamPipe() (c1, c2 net.Conn, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, nil, nil, err
	}
	a := <-accepted
	if a == nil {
		d.Close()
		return nil, nil, nil, errors.New("accept failed")
	}
	c1, c2 = Stream(d), Stream(a)
	return c1, c2, func() { c1.Close(); c2.Close() }, nil
}

// TestStreamConn runs the net.Conn conformance tests on Stream: deadlines,
// Close unblocking a read or write, concurrent readers and writers.
func TestStreamConn(t *testing.T) {
	c1, _, stop, err := streamPipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c1.(*stream); !ok {
		t.Fatalf("Stream of a TCP connection is a %T, want a *stream", c1)
	}
	stop()
	nettest.TestConn(t, streamPipe)
}

// TestStreamEOFAndBuffers: a peer's close reads as io.EOF after what it
// sent, WriteBuffers writes every buffer, and an expired read deadline
// is os.ErrDeadlineExceeded, a timeout.
func TestStreamEOFAndBuffers(t *testing.T) {
	c1, c2, stop, err := streamPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c2.SetReadDeadline(time.Now().Add(time.Millisecond))
	var ne net.Error
	if _, err := c2.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	c2.SetReadDeadline(time.Time{})
	want := bytes.Repeat([]byte("0123456789"), 100000)
	go func() {
		bw, ok := c1.(interface {
			WriteBuffers(*net.Buffers) (int64, error)
		})
		if !ok {
			c1.Write(want)
		} else {
			bufs := net.Buffers{want[:10], want[10:500000], want[500000:]}
			if n, err := bw.WriteBuffers(&bufs); n != int64(len(want)) || err != nil {
				t.Errorf("WriteBuffers: %d, %v; want %d, nil", n, err, len(want))
			}
		}
		c1.Close()
	}()
	got, err := io.ReadAll(c2)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want the %d sent then EOF", len(got), err, len(want))
	}
}
