package bench

import (
	"context"
	"testing"
	"time"
)

// TestPhases: with Phases a run marks "connected" once every client is
// connected and "closing" before they close, and compare's watcher follows
// the marks however the output is split into writes.
func TestPhases(t *testing.T) { forBrokers(t, testPhases) }

func testPhases(t *testing.T, url brokerURLs) {
	cfg := testConfig(t, "conn", url.tcp)
	cfg.Clients, cfg.Duration, cfg.Phases = 20, 50*time.Millisecond, true
	var ph phaseWatch
	cfg.onReady = func() {
		if got := ph.phase(); got != "connected" {
			t.Errorf("phase when ready: %q", got)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := Run(ctx, cfg, &ph)
	if err != nil {
		t.Fatal(err)
	}
	if s.Clients.Connected != 20 || ph.phase() != "closing" {
		t.Errorf("connected %d, last phase %q", s.Clients.Connected, ph.phase())
	}
}

func TestPhaseWatch(t *testing.T) {
	var seen []string
	ph := phaseWatch{onPhase: func(name string) { seen = append(seen, name) }}
	for _, chunk := range []string{"12:00 sent 5 ", "msg/s\nphase: conn", "ected\n", "other line\n"} {
		ph.Write([]byte(chunk))
	}
	if got := ph.phase(); got != "connected" {
		t.Errorf("phase %q, want connected", got)
	}
	ph.Write([]byte("phase: closing"))
	if got := ph.phase(); got != "connected" {
		t.Errorf("an unfinished line counted: %q", got)
	}
	ph.Write([]byte("\n"))
	if got := ph.phase(); got != "closing" {
		t.Errorf("phase %q, want closing", got)
	}
	if len(seen) != 2 || seen[0] != "connected" || seen[1] != "closing" {
		t.Errorf("onPhase saw %q, want connected then closing, each once", seen)
	}
}
