//go:build linux

package netpoll

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// reader is a Handler that reads once per Step, as the broker does: a read
// that returns less than it asked for ends the step.
type reader struct {
	c      *Conn
	got    atomic.Int64
	closed chan error
}

func (h *reader) Step() error {
	var b [512]byte
	n, err := h.c.Read(b[:])
	h.got.Add(int64(n))
	return err
}

func (h *reader) Expired() error { return errIdle }
func (h *reader) Drained()       {}
func (h *reader) Closed(err error) {
	h.c.Close()
	h.closed <- err
}

// TestCloseWithDataSeen: a peer that sends bytes and closes (FIN, or a
// reset) before the poller takes the bytes' event is seen to close: one
// edge announces both, and the reader reads on to the end rather than
// parking after a short read. The poller is held while the bytes and the
// close arrive, until the server's socket is past them (CLOSE_WAIT), so
// the one event holds both every time.
func TestCloseWithDataSeen(t *testing.T) {
	if !CanPeek {
		t.Skip("no parking here")
	}
	var gate atomic.Pointer[chan struct{}] // set: the poller waits for its close
	e := New(Config{MaxQueued: 1 << 20, PollFault: func() error {
		if g := gate.Load(); g != nil {
			<-*g
		}
		return nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closes := map[string]func(*net.TCPConn){
		"close":      func(c *net.TCPConn) { c.Close() },
		"half close": func(c *net.TCPConn) { c.CloseWrite() },
		"reset":      func(c *net.TCPConn) { c.SetLinger(0); c.Close() },
	}
	var clients []net.Conn
	defer func() { stopEngine(t, e, clients) }()
	for i := range 30 {
		for how, closeIt := range closes {
			cc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, cc)
			nc, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			h := &reader{closed: make(chan error, 1)}
			if h.c = e.Open(nc, h); h.c == nil {
				t.Fatal("engine stopped")
			}
			h.c.Start(0) // finds nothing and parks
			if !h.c.Parked() {
				t.Fatal("not parked after an empty first read")
			}
			g := make(chan struct{})
			gate.Store(&g)
			if _, err := cc.Write([]byte("bytes, then the end")); err != nil {
				t.Fatal(err)
			}
			closeIt(cc.(*net.TCPConn))
			eventually(t, how+": the close to reach the server", func() bool {
				st := tcpState(t, nc.(*net.TCPConn))
				return st == unix.BPF_TCP_CLOSE_WAIT || st == unix.BPF_TCP_CLOSE
			})
			gate.Store(nil)
			close(g)
			select {
			case err := <-h.closed:
				if how != "reset" && !errors.Is(err, io.EOF) {
					t.Fatalf("%s #%d: ended with %v, want EOF", how, i, err)
				}
			case <-time.After(waitTime):
				t.Fatalf("%s #%d: the close was not seen (%d bytes read)", how, i, h.got.Load())
			}
		}
	}
}

// tcpState is the kernel's TCP state of c.
func tcpState(t *testing.T, c *net.TCPConn) uint8 {
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var serr error
	raw.Control(func(fd uintptr) { info, serr = unix.GetsockoptTCPInfo(int(fd), syscall.IPPROTO_TCP, unix.TCP_INFO) })
	if serr != nil {
		t.Fatal(serr)
	}
	return info.State
}
