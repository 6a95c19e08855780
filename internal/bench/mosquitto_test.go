package bench

import (
	"context"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
)

// startMosquitto runs mosquitto with extra config lines on a free port and
// returns the port; it is stopped when the test ends.
func startMosquitto(t testing.TB, extra string, waitPorts ...int) int {
	t.Helper()
	// max_inflight_messages 0: mosquitto 2.0.11 drops queued QoS 1/2
	// messages to 3.1.1 subscribers once their inflight window (20) is
	// full (see docs/bench.md); the tests check the tool, not that bug.
	return brokertest.Mosquitto(t, "set_tcp_nodelay true\nmax_queued_messages 100000\nmax_inflight_messages 0\n"+
		"max_connections -1\n"+extra, waitPorts...)
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
