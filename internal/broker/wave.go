package broker

import (
	"sync/atomic"
	"time"
)

// A wave is the acknowledgements one large fan-out asks for: the QoS 1/2
// PUBLISHes that one routing pass queued to parked connections. The poller
// does not read a connection of an open wave as soon as its PUBACK or
// PUBREC arrives; it holds it until nine in ten of the wave have answered,
// or waveHold after the first answer, then wakes them all at once.
//
// Reading each acknowledgement as it trickles in puts the broker's reads,
// its PUBRELs and the recipients' PUBCOMPs among the deliveries of the
// same burst that recipients are still reading. When many recipients
// share a host (a gateway, a backend service, a load generator), that
// work competes with reading the burst itself; held, it comes after.
// Recipients on hosts of their own answer within about one round trip, so
// their quorum comes soon, and none is held longer than waveHold.
//
// Mosquitto answers a fan-out's acknowledgements after its loop has
// written the whole fan-out, which on a busy host is about as late.
type wave struct {
	sent   atomic.Int32 // PUBLISHes of the pass that expect an answer
	sealed atomic.Bool  // the pass has ended: sent is final

	// Owned by the poller goroutine. The deadline is waveHold after the
	// first answer came.
	held     []*conn
	deadline time.Time
	closed   bool
	listed   bool
}

const (
	// waveMin is the fewest recipients of a pass that make a wave.
	waveMin = 64
	// waveHold bounds how long a connection is held.
	waveHold = 50 * time.Millisecond
)

// quorum reports whether enough of the wave has answered to read them:
// nine in ten, once the pass has ended.
func (w *wave) quorum() bool {
	if !w.sealed.Load() {
		return false
	}
	n := int(w.sent.Load())
	return len(w.held) >= n-n/10
}

// joinWave makes c's next acknowledgement part of sc's wave, if the pass
// makes one and c is parked by the poller, and reports whether it did. It
// runs before the PUBLISH is queued, so the answer cannot come first.
func (sc *scratch) joinWave(c *conn) bool {
	w := sc.wave
	if w == nil || c.poll == nil {
		return false
	}
	w.sent.Add(1)
	c.wave.Store(w)
	return true
}

// leaveWave takes back a joinWave whose PUBLISH was dropped.
func (sc *scratch) leaveWave() { sc.wave.sent.Add(-1) }

// startWave opens a wave for a pass to n recipients of a QoS 1/2 message.
func (sc *scratch) startWave(n int, qos byte) {
	if n >= waveMin && qos > 0 {
		sc.wave = &wave{}
	}
}

// endWave seals the pass's wave: from now on the quorum can be reached.
func (sc *scratch) endWave() {
	if sc.wave != nil {
		sc.wave.sealed.Store(true)
		sc.wave = nil
	}
}
