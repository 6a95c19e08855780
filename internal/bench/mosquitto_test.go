package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs mosquitto with extra config lines on a free port and
// returns the port; it is stopped when the test ends.
func startMosquitto(t testing.TB, extra string, waitPorts ...int) int {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Skip("mosquitto not installed")
	}
	dir := t.TempDir()
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		conf := filepath.Join(dir, "mosquitto.conf")
		// max_inflight_messages 0: mosquitto 2.0.11 drops queued QoS 1/2
		// messages to 3.1.1 subscribers once their inflight window (20) is
		// full (see docs/bench.md); the tests check the tool, not that bug.
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"+
			"max_queued_messages 100000\nmax_inflight_messages 0\nmax_connections -1\n%s", port, extra)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(mosquittoBin, "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		ok := waitListening(port, exited, 5*time.Second)
		for _, p := range waitPorts {
			ok = ok && waitListening(p, exited, 5*time.Second)
		}
		if ok {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
			})
			return port
		}
		cmd.Process.Kill()
		<-exited
	}
	t.Fatal("mosquitto did not start")
	return 0
}

// waitListening polls until 127.0.0.1:port accepts, the process exits or
// the deadline passes.
func waitListening(port int, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// testConfig is a quiet, bounded config against url.
func testConfig(t testing.TB, mode, url string) Config {
	t.Helper()
	tg, err := ParseTarget(url, TLSOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Mode: mode, Target: tg, Size: 64, Duration: 20 * time.Second, Timeout: 5 * time.Second,
		ClientID: ParseTemplate(t.Name() + "-" + mode + "-%i"), Topic: ParseTemplate("bench/%i"),
		SubTopic: ParseTemplate("bench/#"), Clean: true,
	}
}

func runT(t testing.TB, cfg Config) *Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Run(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
