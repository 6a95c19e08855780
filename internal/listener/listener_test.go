package listener

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// TestMain fails the run if goroutines started by this package or its test
// peers outlive the tests (a small goleak).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var leaked []string
		for deadline := time.Now().Add(5 * time.Second); ; {
			if leaked = leakedGoroutines(); len(leaked) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond) // polling for goroutines to exit
		}
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n\n%s\n", strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines are the stacks of goroutines, other than the caller's,
// that run or were started by code outside the standard library.
func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	var leaked []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")[1:] {
		if strings.Contains(g, "github.com/") {
			leaked = append(leaked, g)
		}
	}
	return leaked
}

// accepted is one connection the test handler got.
type accepted struct {
	conn net.Conn
	info ConnInfo
}

// testServer is a running Listener whose handler records each connection and
// then runs serve on it (echo by default).
type testServer struct {
	l        *Listener
	accepted chan accepted
	ended    chan error // each handler's final read error

	// mu guards the fields below it. A handler may start after Serve has
	// returned (the hand-off is on the connection's goroutine), so a
	// WaitGroup would race: handlers count themselves in unless stopped.
	mu      sync.Mutex
	stopped bool
	running int
}

// enter counts a handler in; false means the test is over.
func (s *testServer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.running++
	return true
}

func (s *testServer) exit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
}

// stop turns away later handlers and waits for the running ones.
func (s *testServer) stop(t *testing.T) {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		s.mu.Lock()
		n := s.running
		s.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d handlers still running", n)
			return
		}
	}
}

// startServer starts a listener for cfg. tweak, when given, adjusts the
// Listener before Serve.
func startServer(t *testing.T, cfg config.Listener, tweak func(*Listener)) *testServer {
	t.Helper()
	s := &testServer{accepted: make(chan accepted, 16), ended: make(chan error, 16)}
	l, err := New(cfg, s.handle, testLogger(t))
	if err != nil {
		t.Fatalf("New(%q): %v", cfg.URL, err)
	}
	if tweak != nil {
		tweak(l)
	}
	s.l = l
	served := make(chan error, 1)
	go func() { served <- l.Serve() }()
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.stop(t)
	})
	return s
}

func (s *testServer) handle(c net.Conn, info ConnInfo) {
	defer c.Close()
	if !s.enter() {
		return
	}
	defer s.exit()
	s.accepted <- accepted{c, info}
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				s.ended <- werr
				return
			}
		}
		if err != nil {
			s.ended <- err
			return
		}
	}
}

// next returns the next accepted connection.
func (s *testServer) next(t *testing.T) accepted {
	t.Helper()
	select {
	case a := <-s.accepted:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return accepted{}
	}
}

// end returns the error that ended the next handler.
func (s *testServer) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not end")
		return nil
	}
}

// testLogger logs at debug level to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// dial connects to l with a deadline on the whole exchange.
func dial(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg to c and reads back exactly as many bytes.
func roundTrip(t *testing.T, c io.ReadWriter, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

func TestTCPEcho(t *testing.T) {
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0"}, nil)
	c := dial(t, s.l)
	roundTrip(t, c, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
	a := s.next(t)
	if _, ok := a.conn.(*net.TCPConn); !ok {
		t.Errorf("conn is %T, want the raw *net.TCPConn", a.conn)
	}
	want := ConnInfo{Listener: "tcp://127.0.0.1:0", Scheme: SchemeTCP}
	if a.info.Listener != want.Listener || a.info.Scheme != want.Scheme || a.info.TLS != nil {
		t.Errorf("info = %+v, want %+v", a.info, want)
	}
	if a.info.Remote.String() != c.LocalAddr().String() || a.info.Local.String() != c.RemoteAddr().String() {
		t.Errorf("info addresses %v -> %v, want %v -> %v", a.info.Remote, a.info.Local, c.LocalAddr(), c.RemoteAddr())
	}
	c.Close()
	if err := s.end(t); err != io.EOF {
		t.Errorf("handler ended with %v, want EOF", err)
	}
}

func TestURLAndAddr(t *testing.T) {
	for _, tc := range []struct{ url, prefix, suffix string }{
		{"tcp://127.0.0.1:0", "tcp://127.0.0.1:", ""},
		{"127.0.0.1:0", "tcp://127.0.0.1:", ""},
		{"mqtt://127.0.0.1:0", "tcp://127.0.0.1:", ""},
		{"ws://127.0.0.1:0", "ws://127.0.0.1:", "/mqtt"},
		{"ws://127.0.0.1:0/custom/path", "ws://127.0.0.1:", "/custom/path"},
		{"tcp://[::1]:0", "tcp://[::1]:", ""},
	} {
		l, err := New(config.Listener{URL: tc.url}, func(c net.Conn, _ ConnInfo) { c.Close() }, nil)
		if err != nil {
			if strings.Contains(tc.url, "::1") {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatalf("New(%q): %v", tc.url, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port == 0 {
			t.Errorf("%s: Addr %v has port 0", tc.url, l.Addr())
		}
		if want := fmt.Sprintf("%s%d%s", tc.prefix, port, tc.suffix); l.URL() != want {
			t.Errorf("%s: URL() = %q, want %q", tc.url, l.URL(), want)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if err := l.Serve(); err != nil {
			t.Errorf("Serve after Close = %v, want nil", err)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in                     string
		scheme, hostport, path string
	}{
		{"tcp://0.0.0.0:1883", "tcp", "0.0.0.0:1883", ""},
		{"mqtt://localhost:1883", "tcp", "localhost:1883", ""},
		{"TCP://:1883", "tcp", ":1883", ""},
		{"tcp://host:1883/", "tcp", "host:1883", ""},
		{"host:1884", "tcp", "host:1884", ""},
		{":1885", "tcp", ":1885", ""},
		{"tcp://host", "tcp", "host:1883", ""},
		{"ssl://host:8883", "ssl", "host:8883", ""},
		{"tls://host:8883", "ssl", "host:8883", ""},
		{"mqtts://host", "ssl", "host:8883", ""},
		{"ws://host:8083", "ws", "host:8083", "/mqtt"},
		{"ws://host:8083/", "ws", "host:8083", "/"},
		{"ws://host", "ws", "host:8083", "/mqtt"},
		{"wss://[::1]:8084/a/b", "wss", "[::1]:8084", "/a/b"},
		{"wss://[::1]", "wss", "[::1]:8084", "/mqtt"},
	} {
		scheme, hostport, path, err := ParseURL(tc.in)
		if err != nil || scheme != tc.scheme || hostport != tc.hostport || path != tc.path {
			t.Errorf("ParseURL(%q) = %q, %q, %q, %v; want %q, %q, %q", tc.in, scheme, hostport, path, err, tc.scheme, tc.hostport, tc.path)
		}
	}
	for _, in := range []string{
		"http://host:80", "udp://host:1883", "tcp://host:1883/path", "tcp://user@host:1883",
		"ws://host:8083/mqtt?x=1", "tcp://host:port", "tcp://host:99999", "tcp://host:", "://x", "tcp://[::1",
	} {
		if s, hp, p, err := ParseURL(in); err == nil {
			t.Errorf("ParseURL(%q) = %q, %q, %q; want an error", in, s, hp, p)
		}
	}
}

func TestNewErrorsNameTheURL(t *testing.T) {
	h := func(c net.Conn, _ ConnInfo) { c.Close() }
	for _, cfg := range []config.Listener{
		{URL: "gopher://127.0.0.1:0"},
		{URL: "ssl://127.0.0.1:0"},
		{URL: "ssl://127.0.0.1:0", TLS: config.TLS{CertFile: "/nonexistent/cert.pem", KeyFile: "/nonexistent/key.pem"}},
		{URL: "tcp://256.0.0.1:0"},
	} {
		l, err := New(cfg, h, nil)
		if err == nil {
			l.Close()
			t.Errorf("New(%+v) succeeded", cfg)
			continue
		}
		if !strings.Contains(err.Error(), cfg.URL) {
			t.Errorf("New(%+v) error %q does not name the URL", cfg, err)
		}
	}
	// A port in use.
	l := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0"}, nil).l
	url := "tcp://" + l.Addr().String()
	if l2, err := New(config.Listener{URL: url}, h, nil); err == nil {
		l2.Close()
		t.Errorf("New(%q) on a bound port succeeded", url)
	} else if !strings.Contains(err.Error(), url) {
		t.Errorf("error %q does not name %q", err, url)
	}
}

// TestCloseKeepsHandedOffConns: Close stops accepting but a connection the
// handler already owns keeps working.
func TestCloseKeepsHandedOffConns(t *testing.T) {
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0"}, nil)
	c := dial(t, s.l)
	roundTrip(t, c, "before")
	s.next(t)
	if err := s.l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	roundTrip(t, c, "after")
	if c2, err := net.DialTimeout("tcp", s.l.Addr().String(), 5*time.Second); err == nil {
		c2.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := c2.Read(make([]byte, 1))
		c2.Close()
		if err == nil {
			t.Error("a connection after Close was served")
		}
	}
	c.Close()
	s.end(t)
}

// TestCloseAbortsHandshakes: a connection still in its handshake when the
// listener closes is closed, and Serve does not wait for its deadline.
func TestCloseAbortsHandshakes(t *testing.T) {
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: loopback}, nil)
	c := dial(t, s.l)
	io.WriteString(c, "PROXY ") // and stall
	// Wait until the listener has the conn in its handshake.
	for deadline := time.Now().Add(10 * time.Second); ; {
		s.l.mu.Lock()
		n := len(s.l.pending)
		s.l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection never pending")
		}
		runtime.Gosched()
	}
	s.l.Close()
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after Close = %v, want the connection closed", err)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	for _, url := range []string{"tcp://127.0.0.1:0", "ws://127.0.0.1:0"} {
		s := startServer(t, config.Listener{URL: url, ProxyProtocol: true, TrustedProxies: loopback}, func(l *Listener) { l.timeout = 50 * time.Millisecond })
		c := dial(t, s.l)
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: read = %v, want the silent connection closed", url, err)
		}
	}
}

// flakyListener fails its first Accept with a temporary error.
type flakyListener struct {
	net.Listener
	once sync.Once
}

type tempErr struct{}

func (tempErr) Error() string   { return "too many open files (test)" }
func (tempErr) Timeout() bool   { return false }
func (tempErr) Temporary() bool { return true }

func (f *flakyListener) Accept() (net.Conn, error) {
	var fail bool
	f.once.Do(func() { fail = true })
	if fail {
		return nil, tempErr{}
	}
	return f.Listener.Accept()
}

func TestAcceptRetriesTemporaryErrors(t *testing.T) {
	s := startServer(t, config.Listener{URL: "tcp://127.0.0.1:0"}, func(l *Listener) {
		l.ln = &flakyListener{Listener: l.ln}
	})
	c := dial(t, s.l)
	roundTrip(t, c, "still serving")
	s.next(t)
	c.Close()
	s.end(t)
}

// tracked is how many accepted connections are in their handshakes.
func (l *Listener) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}
