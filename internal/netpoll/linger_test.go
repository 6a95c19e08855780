//go:build linux

package netpoll

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/testcert"
)

// stuffer is a Handler that, once its client has sent something, fills
// the socket's send buffer (the client never reads) and ends the
// connection with a graceful close.
type stuffer struct {
	c      *Conn
	closed chan struct{}
}

var errStuffed = errors.New("send buffer full")

func (h *stuffer) Step() error {
	var b [64]byte
	n, err := h.c.Read(b[:])
	if n == 0 {
		return err
	}
	// Large writes, then ever smaller ones, until not a byte more fits.
	tcp := tcpOf(h.c.nc)
	junk := make([]byte, 64<<10)
	for size := len(junk); size > 0; size /= 16 {
		tcp.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			if _, err := tcp.Write(junk[:size]); err != nil {
				break
			}
		}
	}
	tcp.SetWriteDeadline(time.Time{})
	return errStuffed
}

func (h *stuffer) Expired() error { return errIdle }
func (h *stuffer) Drained()       {}
func (h *stuffer) Closed(error) {
	h.c.Linger()
	h.c.Close()
	close(h.closed)
}

// TestStopCutsTLSLingerShort: the graceful close of a TLS connection whose
// client stopped reading (its close_notify cannot be written) does not
// hold Engine.Stop and Wait up: lingerStop bounds it, not tls's 5 s.
func TestStopCutsTLSLingerShort(t *testing.T) {
	ca := testcert.NewCA(t, "ca")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "server")}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := New(Config{MaxQueued: 1 << 20, WriteTimeout: 30 * time.Second})
	h := &stuffer{closed: make(chan struct{})}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		if err := nc.(*tls.Conn).Handshake(); err != nil { // as the listener does
			nc.Close()
			return
		}
		if h.c = e.Open(nc, h); h.c != nil {
			h.c.Start(time.Minute)
		}
	}()
	client, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.closed:
	case <-time.After(waitTime):
		t.Fatal("the connection did not end")
	}
	start := time.Now()
	e.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Stop and Wait took %v with a lingering TLS close, want about %v", d, lingerStop)
	}
}
