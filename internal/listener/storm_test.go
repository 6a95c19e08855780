package listener

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
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

// TestChurnCountsOnlyBursts: opens and closes count toward a storm only
// while they come without a closeQuiet gap, so a device now and then never
// adds up to a collection.
func TestChurnCountsOnlyBursts(t *testing.T) {
	defer ReturnMemoryAfterStorm(true)
	ReturnMemoryAfterStorm(false) // a storm below plans no free
	// A storm counted earlier (a previous -count run) ends closeQuiet
	// after its last event.
	for deadline := time.Now().Add(5 * time.Second); closes.armed.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("an earlier storm is still being counted")
		}
		runtime.Gosched()
	}
	closes.n.Store(0)
	for range stormHandshakes - 1 {
		NoteOpened()
	}
	// A gap longer than closeQuiet, as between two devices of ordinary churn.
	closes.last.Add(-int64(2 * closeQuiet))
	NoteClosed()
	if n := closes.n.Load(); n != 1 || closes.armed.Load() {
		t.Fatalf("after a gap: %d counted (armed %v), want 1, not armed", n, closes.armed.Load())
	}
	for range stormHandshakes {
		NoteOpened()
	}
	if !closes.armed.Load() {
		t.Fatalf("%d opens in one burst did not arm the storm return", stormHandshakes)
	}
}
