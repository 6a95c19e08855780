// Package bench is the load generator and benchmark harness behind
// `culex bench`: many lightweight MQTT clients built on Culex's own codec,
// each with one reader goroutine and batched writes, measuring end-to-end
// latency, loss, duplicates and reordering from a header in every payload.
package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// runner owns every client and goroutine of one run.
type runner struct {
	cfg    *Config
	target *Target
	lat    *latencies
	// connLat is each client's dial to CONNACK; connStart and connEnd
	// bound the connecting of every client.
	connLat            *latencies
	connStart, connEnd time.Time

	subs, idle, pubs []*client

	connected      atomic.Int64
	subscribed     atomic.Int64
	sessionPresent atomic.Int64 // CONNACKs with session present

	// expectDone is closed once the subscribers have cfg.Expect distinct
	// messages, at expectAt (written before the close).
	expectDone chan struct{}
	expectAt   time.Time
	errCount   atomic.Int64
	closing    atomic.Bool

	errMu sync.Mutex
	errs  map[string]int64 // "stage: kind" -> count, guarded by errMu

	wg sync.WaitGroup // readers and flushers

	pubStart, pubEnd time.Time
}

// Run executes one bench run and returns its summary. Live lines go to live
// (nil: none). Cancelling ctx ends the run early; the summary still comes back.
func Run(ctx context.Context, cfg Config, live io.Writer) (*Summary, error) {
	cfg.Defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: &cfg, target: cfg.Target, lat: newLatencies(), connLat: newLatencies(), errs: map[string]int64{},
		expectDone: make(chan struct{})}
	r.target.Timeout = cfg.Timeout
	mk := func(ro role, n int) []*client {
		cs := make([]*client, n)
		for i := range cs {
			cs[i] = newClient(r, ro, cfg.StartNumber+i)
		}
		return cs
	}
	switch cfg.Mode {
	case "conn":
		r.idle = mk(roleIdle, cfg.Clients)
	case "pub":
		r.pubs = mk(rolePub, cfg.Clients)
	case "sub":
		r.subs = mk(roleSub, cfg.Clients)
	case "run":
		r.subs, r.pubs = mk(roleSub, cfg.Subs), mk(rolePub, cfg.Pubs)
	default:
		return nil, fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	if cfg.SeqFile != "" {
		if err := r.loadSeqFile(cfg.SeqFile); err != nil {
			return nil, err
		}
	}

	cpu0, start := cpuTime(), time.Now()
	bgCtx, stopBG := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(3)
	go func() { defer bg.Done(); r.keepalive(bgCtx) }()
	go func() { defer bg.Done(); r.report(bgCtx, live, start) }()
	go func() { defer bg.Done(); r.watchExpect(bgCtx) }()

	r.connStart = time.Now()
	r.connectAll(ctx, r.subs)
	r.connectAll(ctx, r.idle)
	r.connectAll(ctx, r.pubs)
	r.connEnd = time.Now()
	r.phase(live, "connected")
	if cfg.onReady != nil {
		cfg.onReady()
	}
	if ctx.Err() == nil {
		switch cfg.Mode {
		case "conn", "sub":
			r.hold(ctx)
		case "pub", "run":
			r.publishAll(ctx)
			r.drain(ctx)
		}
	}
	r.phase(live, "closing")
	r.close()
	stopBG()
	bg.Wait()
	if cfg.SeqFile != "" {
		if err := r.saveSeqFile(cfg.SeqFile); err != nil {
			return nil, err
		}
	}
	return r.summary(time.Since(start), cpuTime().sub(cpu0)), nil
}

// watchExpect closes expectDone once the subscribers have cfg.Expect
// distinct messages (never when Expect is 0).
func (r *runner) watchExpect(ctx context.Context) {
	if r.cfg.Expect <= 0 {
		return
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if sum(r.subs, func(c *client) int64 { return c.uniq.Load() }) >= r.cfg.Expect {
			r.expectAt = time.Now()
			close(r.expectDone)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// phase marks a step of the run for a harness reading the live output.
func (r *runner) phase(live io.Writer, name string) {
	if r.cfg.Phases && live != nil {
		fmt.Fprintf(live, "phase: %s\n", name)
	}
}

// connectAll starts handshakes cfg.ConnInterval apart, at most
// cfg.ConnConcurrency at once, and returns when every one has finished.
func (r *runner) connectAll(ctx context.Context, cs []*client) {
	sem := make(chan struct{}, r.cfg.ConnConcurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range cs {
		if d := r.cfg.ConnInterval; d > 0 && !sleepUntil(ctx, start.Add(time.Duration(i)*d)) {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.connect(ctx)
			<-sem
		}()
	}
	wg.Wait()
}

// connect makes the client's handshake; with cfg.Retry, a failed one is
// tried again (after 100 ms, doubling to 2 s) until cfg.Retry after the
// first dial, as a device does. Every failed attempt counts as an error.
func (c *client) connect(ctx context.Context) {
	first := time.Now()
	wait := 100 * time.Millisecond
	for c.handshake(ctx) != nil && c.r.cfg.Retry > 0 {
		if time.Since(first)+wait > c.r.cfg.Retry || !sleepUntil(ctx, time.Now().Add(wait)) {
			return
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// hold keeps the connections open for cfg.Duration (0: until ctx ends),
// or in sub mode until cfg.Limit messages, or cfg.Expect distinct ones,
// have arrived.
func (r *runner) hold(ctx context.Context) {
	var end <-chan time.Time
	if r.cfg.Duration > 0 {
		t := time.NewTimer(r.cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end:
			return
		case <-r.expectDone:
			return
		case <-tick.C:
			if r.cfg.Limit > 0 && sum(r.subs, func(c *client) int64 { return c.recv.Load() }) >= r.cfg.Limit {
				return
			}
			if r.connected.Load() == 0 && r.cfg.Mode == "sub" {
				return // every subscriber is gone: nothing left to wait for
			}
		}
	}
}

// publishAll runs one goroutine per connected publisher until the limit,
// the duration or ctx ends it.
func (r *runner) publishAll(ctx context.Context) {
	cfg := r.cfg
	rate := perClientRate(cfg.Rate, cfg.Interval, len(r.pubs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	r.pubStart = time.Now()
	for i, c := range r.pubs {
		if !c.connected.Load() {
			continue
		}
		var limit int64
		if cfg.Limit > 0 {
			limit = cfg.Limit / int64(len(r.pubs))
			if int64(i) < cfg.Limit%int64(len(r.pubs)) {
				limit++
			}
			if limit == 0 {
				continue
			}
		}
		at := r.pubStart
		if rate > 0 { // spread the first messages over one period (at most 1s)
			period := min(time.Second, time.Duration(float64(time.Second)/rate))
			at = at.Add(period * time.Duration(i) / time.Duration(len(r.pubs)))
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.publishLoop(stop, rate, limit, at) }()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var end <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		end = t.C
	}
	select {
	case <-done:
	case <-end:
	case <-ctx.Done():
	}
	close(stop)
	for _, c := range r.pubs {
		c.wakePublisher()
	}
	<-done
	r.pubEnd = time.Now()
}

// drain waits, at most cfg.Drain, for acknowledgements and for the expected
// deliveries; it also stops after 2s without any progress.
func (r *runner) drain(ctx context.Context) {
	expected := r.expected()
	deadline := time.Now().Add(r.cfg.Drain)
	quiet := min(2*time.Second, r.cfg.Drain)
	last, lastChange := int64(-1), time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		inflight := 0
		for _, c := range r.pubs {
			if c.connected.Load() {
				inflight += c.inflightCount()
			}
		}
		recv := sum(r.subs, func(c *client) int64 { return c.recv.Load() })
		if inflight == 0 && (recv >= expected || r.connected.Load() == 0) {
			return
		}
		now := time.Now()
		if p := recv + sum(r.pubs, func(c *client) int64 { return c.acked.Load() }); p != last {
			last, lastChange = p, now
		}
		if now.After(deadline) || now.Sub(lastChange) > quiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// expected is the number of deliveries the subscriptions call for.
func (r *runner) expected() int64 {
	var n int64
	for _, s := range r.subs {
		for _, p := range r.pubs {
			if topicMatch(s.topic, p.topic) {
				n += p.sent.Load()
			}
		}
	}
	return n
}

// close sends DISCONNECT on every live connection, waits (at most 2s) for
// the writes, closes the sockets and waits for every goroutine.
func (r *runner) close() {
	r.closing.Store(true)
	all := [][]*client{r.pubs, r.subs, r.idle}
	for _, cs := range all {
		for _, c := range cs {
			c.wakePublisher()
			if c.connected.Load() {
				c.sendControl(&packet.Disconnect{})
			}
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, cs := range all {
		for _, c := range cs {
			for !c.idle() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
	}
	for _, cs := range all {
		for _, c := range cs {
			if c.nc != nil {
				c.shutdown()
			}
		}
	}
	r.wg.Wait()
}

// keepalive sends PINGREQ on connections that wrote nothing for half the
// keep-alive interval.
func (r *runner) keepalive(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	half := int64(r.cfg.KeepAlive / 2)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, cs := range [][]*client{r.pubs, r.subs, r.idle} {
				for _, c := range cs {
					if c.connected.Load() && now.UnixNano()-c.lastWrite.Load() > half {
						c.sendControl(&packet.Pingreq{})
					}
				}
			}
		}
	}
}

// report prints one line per second: connections, rates and errors.
func (r *runner) report(ctx context.Context, w io.Writer, start time.Time) {
	if w == nil || !r.cfg.Live {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	total := len(r.pubs) + len(r.subs) + len(r.idle)
	var lastSent, lastRecv int64
	last := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sent := sum(r.pubs, func(c *client) int64 { return c.sent.Load() })
			recv := sum(r.subs, func(c *client) int64 { return c.recv.Load() })
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(w, "%4.0fs  conn %d/%d  pub/s %.0f  recv/s %.0f  errors %d\n",
				now.Sub(start).Seconds(), r.connected.Load(), total,
				float64(sent-lastSent)/dt, float64(recv-lastRecv)/dt, r.errCount.Load())
			lastSent, lastRecv, last = sent, recv, now
		}
	}
}

func sum(cs []*client, f func(*client) int64) int64 {
	var n int64
	for _, c := range cs {
		n += f(c)
	}
	return n
}

// sleepUntil waits for t or ctx; it reports false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
