package listener

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// After a storm of handshakes the Go heap has grown to about twice what
// the connections keep (the garbage of every handshake), and the runtime
// gives the difference back to the OS only slowly: the broker's RSS would
// stay at the storm's peak. So once every handshake worker of every
// listener has ended (no handshake for workerIdle) after at least
// stormHandshakes handshakes, the listener returns the freed memory at
// once (debug.FreeOSMemory: a collection, then every free page), at most
// once per freeEvery.
const (
	stormHandshakes = 256
	freeEvery       = 5 * time.Second
)

var storm struct {
	workers    atomic.Int64 // handshake workers running, every listener
	handshakes atomic.Int64 // since the last free
	mu         sync.Mutex
	last       time.Time
	timer      *time.Timer
	frees      atomic.Int64 // for tests
}

// stormWorkerDone runs when a handshake worker ends.
func stormWorkerDone() {
	if storm.workers.Add(-1) > 0 || storm.handshakes.Load() < stormHandshakes {
		return
	}
	storm.mu.Lock()
	defer storm.mu.Unlock()
	if storm.timer != nil {
		return // a free is due already
	}
	wait := freeEvery - time.Since(storm.last)
	storm.timer = time.AfterFunc(max(wait, 0), freeAfterStorm)
}

func freeAfterStorm() {
	storm.handshakes.Store(0)
	debug.FreeOSMemory()
	storm.mu.Lock()
	storm.last, storm.timer = time.Now(), nil
	storm.mu.Unlock()
	storm.frees.Add(1)
}
