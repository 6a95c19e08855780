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
// once per freeEvery, and only while ReturnMemoryAfterStorm is on
// (mqtt.return_memory_after_storm). The collector's settings (GOGC,
// GOMEMLIMIT) are never changed: they are the operator's.
const (
	stormHandshakes = 256
	freeEvery       = 30 * time.Second
)

var storm struct {
	workers    atomic.Int64 // handshake workers running, every listener
	handshakes atomic.Int64 // since the last free
	off        atomic.Bool  // ReturnMemoryAfterStorm(false)
	mu         sync.Mutex
	last       time.Time
	timer      *time.Timer
	again      bool // free again after the planned free; guarded by mu
}

// ReturnMemoryAfterStorm turns returning memory to the OS after a storm of
// handshakes or disconnects on or off, for the whole process (on unless
// turned off).
func ReturnMemoryAfterStorm(on bool) { storm.off.Store(!on) }

// stormWorkerStarted runs when a handshake worker starts.
func stormWorkerStarted() { storm.workers.Add(1) }

// stormWorkerDone runs when a handshake worker ends.
func stormWorkerDone() {
	if storm.workers.Add(-1) > 0 || storm.handshakes.Load() < stormHandshakes {
		return
	}
	storm.mu.Lock()
	defer storm.mu.Unlock()
	planFreeLocked()
}

// The same goes for a storm of connections opened without a TLS
// handshake (plain TCP or WebSocket devices reconnecting at once: each
// CONNECT's authentication and, in a cluster, its client-id claim leave
// garbage too) and for a storm of disconnects (every device dropping at
// once): the engine calls NoteOpened as it takes each connection and
// NoteClosed as each ends, and once closeQuiet passes without either after
// at least stormHandshakes of them in one burst, the freed memory is
// returned.
const closeQuiet = 200 * time.Millisecond

var closes struct {
	n     atomic.Int64 // since the last free
	last  atomic.Int64 // monoNow of the last one
	armed atomic.Bool
}

var monoBase = time.Now()

// NoteOpened counts a connection the engine took.
func NoteOpened() { noteChurn() }

// NoteClosed counts a connection that ended.
func NoteClosed() { noteChurn() }

// noteChurn counts one open or close. Only a burst counts: a gap of
// closeQuiet ends it, so ordinary churn (a device now and then) never adds
// up to a storm.
func noteChurn() {
	now := int64(time.Since(monoBase))
	if prev := closes.last.Swap(now); now-prev > int64(closeQuiet) && !closes.armed.Load() {
		closes.n.Store(0)
	}
	if closes.n.Add(1) >= stormHandshakes && closes.armed.CompareAndSwap(false, true) {
		time.AfterFunc(closeQuiet, closesQuiet)
	}
}

func closesQuiet() {
	if rest := closeQuiet - (time.Since(monoBase) - time.Duration(closes.last.Load())); rest > 0 {
		time.AfterFunc(rest, closesQuiet)
		return
	}
	closes.n.Store(0)
	closes.armed.Store(false)
	storm.mu.Lock()
	defer storm.mu.Unlock()
	planFreeLocked()
}

// planFreeLocked plans a free freeEvery after the last one (at once if
// that has passed). One already planned is done again after it: what it
// returns may not include the storm that asked now.
func planFreeLocked() {
	if storm.off.Load() {
		storm.handshakes.Store(0)
		return
	}
	if storm.timer != nil {
		storm.again = true
		return
	}
	storm.timer = time.AfterFunc(max(freeEvery-time.Since(storm.last), 0), freeAfterStorm)
}

func freeAfterStorm() {
	storm.handshakes.Store(0)
	debug.FreeOSMemory()
	storm.mu.Lock()
	storm.last, storm.timer = time.Now(), nil
	if storm.again {
		storm.again = false
		planFreeLocked()
	}
	storm.mu.Unlock()
}
