package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// TestIdleTLSMemory measures what an idle TLS 1.3 connection keeps in the
// listener's process once handed over (the handler keeps the conn and its
// ConnInfo, with no goroutine, as the broker's parked reader does): heap
// and stack after two collections, with the clients in a child process.
// With crypto/tls's Conn kept, this was about 8 KiB (its record buffers
// grown by the handshake, two expanded AES-GCM states); with the record
// layer, about 1.2 KiB, the socket and ConnInfo included.
func TestIdleTLSMemory(t *testing.T) {
	if testing.Short() || os.Getenv("CULEX_TLSMEM_CHILD") != "" {
		t.Skip("measurement")
	}
	const n = 1000
	p := newPKI(t)
	var mu sync.Mutex
	// Allocated before the listener starts (its handlers append to it)
	// and before the first measurement.
	kept := make([]any, 0, 2*n)
	got := make(chan struct{}, n)
	l, err := New(config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, func(c net.Conn, info ConnInfo) {
		// The byte each client sends, read the way that waits (no
		// engine beneath): the read buffer goes back once it is read.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Errorf("read: %v", err)
		}
		mu.Lock()
		kept = append(kept, c, info)
		mu.Unlock()
		got <- struct{}{}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	defer l.Close()
	goroutines := runtime.NumGoroutine() + 2 // the accept loop, the certificate watch
	before := heapAndStack()
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleTLSClients$")
	cmd.Env = append(os.Environ(), "CULEX_TLSMEM_CHILD="+l.Addr().String(), "CULEX_TLSMEM_N="+strconv.Itoa(n), "CULEX_TLSMEM_CA="+p.caFile)
	stdin, _ := cmd.StdinPipe()
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for range n {
		select {
		case <-got:
		case <-deadline:
			t.Fatal("clients did not all connect within 60s")
		}
	}
	// The handshake workers end after workerIdle, the handlers once they
	// have kept their conn; their stacks go with them.
	for wait := time.Now().Add(20 * time.Second); (l.running.Load() > 0 || runtime.NumGoroutine() > goroutines) && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	after := heapAndStack()
	per := float64(after-before) / n
	// Nothing of an idle conn may point into a pooled read buffer.
	for _, k := range kept {
		if c, ok := k.(*tls13Conn); ok && (c.rbuf != nil || c.part != nil || c.plain != nil || c.hs != nil) {
			t.Fatalf("an idle conn holds read state: rbuf %v, part %d, plain %d (cap %d), hs %d",
				c.rbuf != nil, len(c.part), len(c.plain), cap(c.plain), len(c.hs))
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("idle TLS 1.3 connections: %d; heap+stack per connection: %.0f bytes (stack in use %d KiB, %d goroutines)",
		n, per, ms.StackInuse>>10, runtime.NumGoroutine())
	if per > 1536 {
		t.Errorf("%.0f bytes per idle TLS connection, want at most 1536", per)
	}
	runtime.KeepAlive(kept)
}

func heapAndStack() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}

// TestIdleTLSClients is the child of TestIdleTLSMemory: it connects N TLS
// clients, each sends a byte, and holds them until stdin closes.
func TestIdleTLSClients(t *testing.T) {
	addr := os.Getenv("CULEX_TLSMEM_CHILD")
	if addr == "" {
		t.Skip("child process of TestIdleTLSMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("CULEX_TLSMEM_N"))
	pem, err := os.ReadFile(os.Getenv("CULEX_TLSMEM_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
		if err != nil {
			t.Fatal(fmt.Errorf("client %d: %w", i, err))
		}
		c.Write([]byte{0})
		conns = append(conns, c)
	}
	os.Stdin.Read(make([]byte, 1))
	for _, c := range conns {
		c.Close()
	}
}
