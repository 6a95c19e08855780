package bench

import (
	"math/rand"
	"testing"
	"time"
)

// simulate drives a pacer with a fake clock whose timer fires late by a
// random amount up to jitter, and returns the messages sent in run.
func simulate(rate float64, run, jitter time.Duration, seed int64) int {
	rng := rand.New(rand.NewSource(seed))
	start := time.Unix(1000, 0)
	now := start
	p := NewPacer(rate, burstFor(rate), start)
	sent := 0
	for {
		n, wait := p.Take(now, publishBatch)
		if n == 0 {
			if jitter > 0 {
				wait += time.Duration(rng.Int63n(int64(jitter)))
			}
			now = now.Add(wait)
		} else {
			now = now.Add(time.Duration(n) * time.Microsecond) // the cost of sending
		}
		if now.Sub(start) >= run {
			return sent
		}
		sent += n
	}
}

func TestPacerCount(t *testing.T) {
	cases := []struct {
		rate   float64
		run    time.Duration
		jitter time.Duration
	}{
		{10, 10 * time.Second, 0},
		{1000, 10 * time.Second, 0},
		{1000, 10 * time.Second, 5 * time.Millisecond},
		{100000, 2 * time.Second, 2 * time.Millisecond},
		{10000, 5 * time.Second, 20 * time.Millisecond},
		{0.5, 20 * time.Second, time.Millisecond},
	}
	for _, c := range cases {
		want := c.rate * c.run.Seconds()
		got := float64(simulate(c.rate, c.run, c.jitter, 1))
		// Within 1% plus one burst (a late final timer) and one message.
		tol := want*0.01 + float64(burstFor(c.rate)) + 1
		if got < want-tol || got > want+1 {
			t.Errorf("rate %v for %v (jitter %v): sent %v, want %v ± %v", c.rate, c.run, c.jitter, got, want, tol)
		}
	}
}

func TestPacerStallDoesNotFlood(t *testing.T) {
	start := time.Unix(0, 0)
	p := NewPacer(1000, burstFor(1000), start)
	p.Take(start, 1)
	// A ten-second stall yields at most one burst, not 10,000 messages.
	n, _ := p.Take(start.Add(10*time.Second), 1<<30)
	if n != burstFor(1000) {
		t.Errorf("after a stall: %d messages, want the burst %d", n, burstFor(1000))
	}
}

func TestPacerUnlimited(t *testing.T) {
	p := NewPacer(0, 0, time.Now())
	if n, wait := p.Take(time.Now(), 64); n != 64 || wait != 0 {
		t.Errorf("unlimited: n=%d wait=%v", n, wait)
	}
}

func TestPerClientRate(t *testing.T) {
	if r := perClientRate(10000, 0, 10); r != 1000 {
		t.Errorf("total rate: %v", r)
	}
	if r := perClientRate(0, 100*time.Millisecond, 10); r != 10 {
		t.Errorf("interval: %v", r)
	}
	if r := perClientRate(0, 0, 10); r != 0 {
		t.Errorf("unlimited: %v", r)
	}
}
