package listener

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testlog"
)

// TestTLS13LargeAndFragmented: after the handshake the listener's record
// layer carries the stream both ways: writes bigger than a record, and
// bytes that arrive in pieces smaller than a record header.
func TestTLS13LargeAndFragmented(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, nil)
	raw, err := net.DialTimeout("tcp", s.l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	// The client's records reach the server a few bytes at a time.
	c := tls.Client(&trickle{Conn: raw}, p.clientConfig())
	msg := make([]byte, 200<<10)
	rand.Read(msg)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}
	if a := s.next(t); a.info.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("version %#x", a.info.TLS.Version)
	}
	c.Close()
	if err := s.end(t); err != io.EOF {
		t.Errorf("after the client's close_notify the server read %v, want io.EOF", err)
	}
}

// trickle writes at most 3 bytes per write.
type trickle struct{ net.Conn }

func (t *trickle) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		m, err := t.Conn.Write(p[:min(3, len(p))])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// TestTLS13KeyUpdate: OpenSSL's s_client sends a KeyUpdate that asks for
// one back ("K"); the echo keeps working under the new keys both ways.
func TestTLS13KeyUpdate(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	p := newPKI(t)
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, nil)
	// Not -quiet, which turns the K command off: s_client prints the
	// session too, and "KEYUPDATE" on stderr once it sent one.
	cmd := exec.Command("openssl", "s_client", "-connect", s.l.Addr().String(), "-tls1_3", "-CAfile", p.caFile)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("s_client ended before echoing %q", want)
				}
				if strings.TrimSpace(l) == want {
					return
				}
			case <-deadline:
				select {
				case err := <-s.ended:
					t.Fatalf("no echo of %q; the server's conn ended with %v", want, err)
				default:
				}
				t.Fatalf("no echo of %q", want)
			}
		}
	}
	io.WriteString(stdin, "before-update\n")
	expect("before-update")
	// s_client takes a whole read of stdin as one command: the next line
	// goes once it reported the KeyUpdate.
	io.WriteString(stdin, "K\n") // KeyUpdate, update_requested
	expect("KEYUPDATE")
	io.WriteString(stdin, "after-update\n")
	expect("after-update")
	io.WriteString(stdin, "k\n") // KeyUpdate, update_not_requested
	expect("KEYUPDATE")
	io.WriteString(stdin, "after-second-update\n")
	expect("after-second-update")
}

// TestHandshakeQueueFull: with the queue full (one connection that has
// sent nothing yet holds its only slot), the next connection is closed at
// once, before any TLS work, and counted; once the queue has room a client
// is served again.
func TestHandshakeQueueFull(t *testing.T) {
	p := newPKI(t)
	cfg := p.tlsConfig("", false)
	cfg.HandshakeWorkers, cfg.MaxPendingHandshakes = 1, 1
	var logs testlog.Buffer
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: cfg}, func(l *Listener) {
		l.log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	waitAdmitted := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.l.admitted.Load() != n {
			if time.Now().After(deadline) {
				t.Fatalf("queue holds %d, want %d", s.l.admitted.Load(), n)
			}
			time.Sleep(time.Millisecond) // polling interval
		}
	}
	silent := dial(t, s.l) // waits for its ClientHello, in the queue
	waitAdmitted(1)
	// On loopback the refusal's reset may beat connect's own check.
	if refused, err := net.DialTimeout("tcp", s.l.Addr().String(), 5*time.Second); err == nil {
		defer refused.Close()
		refused.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := refused.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection over max_pending_handshakes was served")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("a connection over max_pending_handshakes was kept waiting, not refused")
		}
	}
	if full, _ := s.l.Refused(); full != 1 {
		t.Errorf("Refused() full = %d, want 1", full)
	}
	if !strings.Contains(logs.String(), "handshake queue full") {
		t.Errorf("no line about the refusal in the log:\n%s", logs.String())
	}
	s.l.summarize()
	if !strings.Contains(logs.String(), "handshake storm over") || !strings.Contains(logs.String(), "refused_queue_full=1") {
		t.Errorf("no summary of the refusals in the log:\n%s", logs.String())
	}
	silent.Close()
	waitAdmitted(0)
	c, err := dialTLS(t, s.l, p.clientConfig())
	if err != nil {
		t.Fatalf("after the storm: %v", err)
	}
	c.Close()
}

// TestTicketKeyRotation: a session ticket resumes in the rotation period
// it was issued in and the next one, not after that.
func TestTicketKeyRotation(t *testing.T) {
	p := newPKI(t)
	cfg := p.tlsConfig("", false)
	cfg.TicketSecret, cfg.TicketRotation = "rotation test", time.Hour
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: cfg}, func(l *Listener) {
		l.tls.now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	resumed := func(cache tls.ClientSessionCache) bool {
		t.Helper()
		conf := p.clientConfig()
		conf.ClientSessionCache = cache
		c, err := dialTLS(t, s.l, conf) // the echo has read the ticket
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().DidResume
	}
	cache := tls.NewLRUClientSessionCache(4)
	if resumed(cache) {
		t.Fatal("the first connection resumed")
	}
	clock.Add(int64(time.Hour)) // the next period: the previous key still decrypts
	if !resumed(cache) {
		t.Error("a ticket of the previous period did not resume")
	}
	old := tls.NewLRUClientSessionCache(4)
	resumed(old) // a ticket of this period
	clock.Add(int64(2 * time.Hour))
	if resumed(old) {
		t.Error("a ticket two periods old resumed")
	}
}

// TestTicketEpochConcurrent: handshakes on many workers take the
// configuration while one of them moves the ticket keys to a new period
// (go test -race finds a racy read of the period).
func TestTicketEpochConcurrent(t *testing.T) {
	p := newPKI(t)
	cfg := p.tlsConfig("", false)
	cfg.TicketSecret, cfg.TicketRotation = "epoch test", time.Hour
	s, err := newTLSState(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	done := make(chan struct{})
	for w := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				s.config(base.Add(time.Duration(i%3+w) * time.Hour))
			}
		}()
	}
	<-done
	<-done
	if s.config(base) == nil {
		t.Fatal("no configuration")
	}
}

// TestSilentPeersTakeNoWorker: connections that send nothing hold no
// handshake worker, so with more of them than workers a real client is
// still served at once, long before the silent ones time out.
func TestSilentPeersTakeNoWorker(t *testing.T) {
	p := newPKI(t)
	cfg := p.tlsConfig("", false)
	cfg.HandshakeWorkers, cfg.HandshakeTimeout = 2, time.Minute
	s := startServer(t, config.Listener{URL: "ssl://127.0.0.1:0", TLS: cfg}, nil)
	const silent = 6
	for range silent {
		dial(t, s.l)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.l.tracked() != silent {
		if time.Now().After(deadline) {
			t.Fatalf("listener holds %d connections, want %d", s.l.tracked(), silent)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	// The client gives up after 5 s; the silent peers hold out for a minute.
	c, err := dialTLS(t, s.l, p.clientConfig())
	if err != nil {
		t.Fatalf("a client behind %d silent connections: %v", silent, err)
	}
	roundTrip(t, c, "served")
	if _, expired := s.l.Refused(); expired != 0 {
		t.Errorf("%d connections expired", expired)
	}
}
