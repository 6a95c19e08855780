package brokertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Mosquitto runs mosquitto with a listener on a free loopback port that
// allows anonymous clients, followed by the conf lines, and returns the
// port once it and every one of waitPorts accept connections. The process
// is killed when the test ends. Where mosquitto is not installed the test
// is skipped, or fails in CI (see Tool).
//
// mosquitto cannot listen on port 0 and report the port, so the port is
// one that was free a moment ago, and the start is retried if another
// process took it first.
func Mosquitto(t testing.TB, conf string, waitPorts ...int) int {
	t.Helper()
	bin := Tool(t, "mosquitto", "mosquitto")
	dir := t.TempDir()
	for range 3 {
		port := FreePort(t)
		file := filepath.Join(dir, "mosquitto.conf")
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\n%s", port, conf)
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", file)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		ok := waitListening(port, exited, 5*time.Second)
		for _, p := range waitPorts {
			ok = ok && waitListening(p, exited, 5*time.Second)
		}
		if ok {
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			return port
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	t.Fatal("mosquitto did not start")
	return 0
}

// FreePort returns a loopback port that was free a moment ago, for servers
// such as mosquitto that must be told their port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening polls until 127.0.0.1:port accepts, the process exits or
// d passes.
func waitListening(port int, exited <-chan struct{}, d time.Duration) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(10 * time.Millisecond): // poll
		}
	}
	return false
}
