package netpoll

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Every job started runs exactly once, whether an idle worker or a new
// goroutine takes it, before and after stop.
func TestWorkersRunEveryJobOnce(t *testing.T) {
	const jobs = 5000
	var ran [2 * jobs]atomic.Int32
	var wg sync.WaitGroup
	w := newWorkers(func(i int) {
		ran[i].Add(1)
		wg.Done()
	})
	startAll := func(from, to int) {
		var starters sync.WaitGroup
		for g := range 8 {
			starters.Add(1)
			go func() {
				defer starters.Done()
				for i := from + g; i < to; i += 8 {
					wg.Add(1)
					w.start(i)
				}
			}()
		}
		starters.Wait()
		wg.Wait()
	}
	idle := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.idle
	}
	startAll(0, jobs)
	// A worker counts itself idle just after its job.
	eventually(t, "an idle worker", func() bool { return idle() > 0 })
	if n := idle(); n > maxIdle {
		t.Fatalf("%d idle workers after the jobs; want at most %d", n, maxIdle)
	}
	w.stop()
	startAll(jobs, 2*jobs)
	for i := range ran {
		if n := ran[i].Load(); n != 1 {
			t.Fatalf("job %d ran %d times", i, n)
		}
	}
}
