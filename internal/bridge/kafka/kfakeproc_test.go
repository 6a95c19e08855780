package kafka

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

const kfakeChildEnv = "CULEX_TEST_KFAKE_CHILD" // "port dir"

// TestKfakeChild is a Kafka-protocol server in its own process (kfake with
// a data dir and synced writes), for the tests that kill Kafka.
func TestKfakeChild(t *testing.T) {
	spec := os.Getenv(kfakeChildEnv)
	if spec == "" {
		t.Skip("child process only")
	}
	portS, dir, _ := strings.Cut(spec, " ")
	port, _ := strconv.Atoi(portS)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites(),
		kfake.SeedTopics(4, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "KFAKE %s\n", c.ListenAddrs()[0])
	select {}
}

// startKfakeProc starts a kfake process on port (0: any) and returns it and
// its address.
func startKfakeProc(t *testing.T, port int, dir string) (*exec.Cmd, string) {
	t.Helper()
	return startChild(t, "TestKfakeChild", fmt.Sprintf("%s=%d %s", kfakeChildEnv, port, dir), "KFAKE ")
}

// startConfigChild runs test in a child like startChild, with cfg as JSON
// in the environment variable env; childConfig reads it back.
func startConfigChild(t *testing.T, test, env string, cfg config.Kafka, ready string) (*exec.Cmd, string) {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startChild(t, test, env+"="+string(raw), ready)
}

// childConfig is the config that startConfigChild put in env; outside such
// a child it skips the test.
func childConfig(t *testing.T, env string) config.Kafka {
	t.Helper()
	raw := os.Getenv(env)
	if raw == "" {
		t.Skip("child process only")
	}
	var cfg config.Kafka
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startChild re-runs this test binary as a child running only test, with
// env set, and returns it once the child prints a stderr line containing
// ready, with the rest of that line. The child is killed at cleanup.
func startChild(t *testing.T, test, env, ready string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), env)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ch := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, a, ok := strings.Cut(sc.Text(), ready); ok {
				select {
				case ch <- a:
				default:
				}
			}
		}
	}()
	select {
	case a := <-ch:
		return cmd, a
	case <-time.After(waitTimeout):
		t.Fatalf("%s child did not start", test)
	}
	return nil, ""
}

// Kafka as a separate process, killed with -9 mid-stream and restarted
// after the outage on the same port with its data: kafka-mode publishes
// lose nothing, and kcat reads the result.
func TestFaultKafkaProcessKilled(t *testing.T) {
	if os.Getenv(kfakeChildEnv) != "" {
		t.Skip("in child")
	}
	dir := t.TempDir()
	proc, brokers := startKfakeProc(t, 0, dir)
	_, portS, _ := net.SplitHostPort(brokers)
	port, _ := strconv.Atoi(portS)
	_, s, wait := startFaultStream(t, brokers, 200)
	waitAcked(t, s, int64(s.devices*s.n/3))
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()
	<-time.After(*outage) // the fault's duration
	startKfakeProc(t, port, dir)
	wait()
	failed := s.failed.Load()
	// A killed Kafka may lose the producer state that deduplicates retries:
	// a batch in flight at the kill can then be written twice. Each device
	// has one publish in flight, so the bound grows by one per device.
	s.failed.Add(int64(s.devices))
	dups := s.verify(t, brokers, "telemetry")
	if got := kcatRead(t, brokers, "telemetry", s.devices*s.n+dups); len(got) != s.devices*s.n+dups {
		t.Errorf("kcat read %d records, want %d", len(got), s.devices*s.n+dups)
	}
	t.Logf("kafka killed for %s: %d acked, %d failed publishes, %d duplicates", *outage, s.acked.Load(), failed, dups)
}
