//go:build linux

package netpoll

import (
	"bufio"
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echo is a Handler that writes back every line it reads.
type echo struct {
	c *Conn
}

var errIdle = errors.New("idle too long")

func (h *echo) Step() error {
	var b [512]byte
	for {
		n, err := h.c.Read(b[:])
		if n > 0 {
			h.c.Enqueue(append([]byte(nil), b[:n]...), nil, false, nil)
		}
		if err != nil {
			return err
		}
		if n < len(b) && !h.c.More() {
			return nil
		}
	}
}

func (h *echo) Expired() error { return errIdle }
func (h *echo) Closed(error)   { h.c.Close() }
func (h *echo) Drained()       {}

// serveEcho serves echo connections from a loopback listener on e until
// the test ends, and stops e then.
func serveEcho(t *testing.T, e *Engine) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			h := &echo{}
			if h.c = e.Open(nc, h); h.c != nil {
				go h.c.Start(time.Minute)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// stopEngine stops e once its connections are gone.
func stopEngine(t *testing.T, e *Engine, conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTime)
	defer cancel()
	eventually(t, "readers to end", func() bool {
		e.mu.Lock()
		p := e.poller
		e.mu.Unlock()
		if p == nil {
			return true
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.conns) == 0
	})
	e.Stop()
	if err := e.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func dialEcho(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

func expectEcho(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitTime))
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo %q: got %q, %v", line, got, err)
	}
}

// TestEngineParksIdleConnections: idle connections hold no goroutine, and
// each is served again when it has something to read.
func TestEngineParksIdleConnections(t *testing.T) {
	if !CanPeek {
		t.Skip("no parking here")
	}
	e := New(Config{MaxQueued: 1 << 20, WriteTimeout: time.Second})
	addr := serveEcho(t, e)
	base := runtime.NumGoroutine()
	const n = 200
	conns := dialEcho(t, addr, n)
	for i, c := range conns {
		expectEcho(t, c, "hello "+string(rune('a'+i%26)))
	}
	eventually(t, "idle readers to park", func() bool { return runtime.NumGoroutine()-base < n/10 })
	for _, c := range conns[:10] {
		expectEcho(t, c, "again")
	}
	stopEngine(t, e, conns)
}

// TestEngineRecoversFromWaitErrors: failed waits of the poller are reported
// and the engine goes on, on a new epoll set, serving connections parked
// before the failures.
func TestEngineRecoversFromWaitErrors(t *testing.T) {
	if !CanPeek {
		t.Skip("no parking here")
	}
	var left, seen atomic.Int32
	e := New(Config{MaxQueued: 1 << 20, OnPollError: func(error) { seen.Add(1) }, PollFault: func() error {
		if left.Add(-1) >= 0 {
			return syscall.EBADF
		}
		return nil
	}})
	addr := serveEcho(t, e)
	conns := dialEcho(t, addr, 3)
	for _, c := range conns {
		expectEcho(t, c, "before")
	}
	left.Store(3)
	for _, c := range conns {
		expectEcho(t, c, "after")
	}
	if n := seen.Load(); n != 3 {
		t.Fatalf("%d failed waits reported, want 3", n)
	}
	stopEngine(t, e, conns)
}
