package kafka

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/config"
)

// Two standalone bridges (child processes) in one share group; one is
// killed with -9 a third into the stream. The other carries the rest of the
// stream alone; the messages that were in flight to the killed one stay in
// its broker session (MQTT 5 lets a broker keep them for that client
// [MQTT-4.8.2-5]; Culex does) until it is restarted with its client id.
// Then every message the broker acknowledged to the publisher is in Kafka,
// and duplicates stay within the killed bridge's in-flight window (its
// Receive Maximum).
func TestStandaloneSharedKillOne(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("in child")
	}
	brokers, addr, cfg := standaloneSetup(t)
	var (
		children []*os.Process
		cfgs     []config.Kafka
	)
	for i := range 2 {
		c := cfg
		c.Source.ClientID = fmt.Sprintf("bridge-%d", i)
		cfgs = append(cfgs, c)
		children = append(children, startBridgeChild(t, c).Process)
	}

	const devices, per = 4, 1000
	pub, err := dialV5(t, addr, "publisher")
	if err != nil {
		t.Fatal(err)
	}
	var acked atomic.Int64
	done := publishSequence(pub, devices, per, &acked)
	waitFor(t, "a third published", func() bool { return acked.Load() >= devices*per/3 })
	if err := children[0].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("bridge-0 killed after %d acknowledged publishes", acked.Load())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// bridge-1 alone carried the stream: all but bridge-0's in-flight
	// window is in Kafka before bridge-0 returns.
	alone := devices*per - int(cfg.Source.ReceiveMaximum)
	if _, n := readDistinct(t, brokers, "telemetry", alone); n < alone {
		t.Fatalf("with bridge-0 dead, %d records in Kafka, want at least %d", n, alone)
	}
	// Bring bridge-0 back for what its session holds.
	startBridgeChild(t, cfgs[0])
	perKey, total := readDistinct(t, brokers, "telemetry", devices*per)
	dups := total - devices*per
	t.Logf("%d records for %d messages: %d duplicates", total, devices*per, dups)
	for d := range devices {
		key := fmt.Sprintf("devices/dev-%d/telemetry", d)
		seen := map[int]bool{}
		for _, v := range perKey[key] {
			seen[v] = true
		}
		var missing []int
		for i := range per {
			if !seen[i] {
				missing = append(missing, i)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: %d of %d lost, first %v", key, len(missing), per, missing[:min(len(missing), 10)])
		}
	}
	if dups < 0 || dups > int(cfg.Source.ReceiveMaximum) {
		t.Errorf("%d duplicates, want 0..%d (the killed bridge's in-flight window)", dups, cfg.Source.ReceiveMaximum)
	}
}
