package bench

import (
	"math"
	"time"
)

// Pacer is a token bucket: tokens accrue at rate per second up to burst,
// and each message takes one. A late timer is caught up (up to burst
// messages), so the achieved count matches rate x time; a long stall (a slow
// broker) is not, so the rate never overshoots and a stall does not turn into
// a flood. It is not safe for concurrent use.
type Pacer struct {
	rate   float64 // tokens per second; <= 0 means unlimited
	burst  float64
	tokens float64
	last   time.Time
}

// minWait is the shortest sleep the pacer asks for.
const minWait = time.Millisecond

// NewPacer returns a pacer that starts at start with one token, so the first
// message goes out at start.
func NewPacer(rate float64, burst int, start time.Time) *Pacer {
	if burst < 1 {
		burst = 1
	}
	return &Pacer{rate: rate, burst: float64(burst), tokens: 1, last: start}
}

// Take returns how many messages (at most limit) may be sent at now. When it
// returns 0, wait is how long until the next token.
func (p *Pacer) Take(now time.Time, limit int) (n int, wait time.Duration) {
	if p.rate <= 0 {
		return limit, 0
	}
	if dt := now.Sub(p.last); dt > 0 {
		p.tokens = math.Min(p.burst, p.tokens+dt.Seconds()*p.rate)
		p.last = now
	}
	if p.tokens < 1 {
		need := time.Duration(math.Ceil((1 - p.tokens) / p.rate * float64(time.Second)))
		// Sleep at least minWait: at high rates a wake-up then sends a small
		// batch in one write instead of one syscall per message.
		return 0, max(need, minWait)
	}
	n = int(p.tokens)
	if n > limit {
		n = limit
	}
	p.tokens -= float64(n)
	return n, 0
}

// perClientRate turns the --rate (total msg/s) or --interval (per client)
// options into a per-client rate; 0 means unlimited.
func perClientRate(total float64, interval time.Duration, clients int) float64 {
	switch {
	case total > 0 && clients > 0:
		return total / float64(clients)
	case interval > 0:
		return float64(time.Second) / float64(interval)
	}
	return 0
}

// burstFor allows about 100 ms of catch-up, at least one message: timers on
// a busy machine fire late, and the target rate should still be met.
func burstFor(rate float64) int {
	return max(1, int(rate/10))
}
