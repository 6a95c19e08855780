package listener

import (
	"runtime/debug"
	"testing"
)

// TestStormLeavesGCSettings: a storm of handshake workers leaves the
// collector's settings (GOGC) as the operator set them.
func TestStormLeavesGCSettings(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(137))
	gogc := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }
	defer ReturnMemoryAfterStorm(true)
	ReturnMemoryAfterStorm(false) // no free: this test only starts workers
	for range 64 {
		stormWorkerStarted()
	}
	during := gogc()
	for range 64 {
		stormWorkerDone()
	}
	if during != 137 || gogc() != 137 {
		t.Errorf("GOGC during a storm %d, after %d; want 137 as set", during, gogc())
	}
}
