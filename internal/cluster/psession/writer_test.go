package psession

import (
	"fmt"
	"sync"
	"testing"
)

// TestDirectWrites: a write made while nothing is queued or being
// published is published on the caller's goroutine (one goroutine hand-off
// less before JetStream has it); its done still runs on another goroutine,
// so a caller may hold a lock that done takes.
func TestDirectWrites(t *testing.T) {
	s := startCluster(t, 3, nil)[0].s
	var mu sync.Mutex
	const n = 20
	for i := range n {
		ch := make(chan result, 1)
		mu.Lock()
		s.Store(msg("direct/t", fmt.Sprint(i)), func(seq uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			ch <- result{seq, err}
		})
		mu.Unlock()
		if r := <-ch; r.err != nil {
			t.Fatal(r.err)
		}
	}
	if c := s.Counters(); c.Direct != n || c.Stored != n {
		t.Errorf("Direct %d, Stored %d: want %d of %d writes published by the caller", c.Direct, c.Stored, n, n)
	}
}

// TestWriteOrderDirectAndQueued: eight goroutines store at once, so that
// some writes go out directly and others through the writer's queue: each
// goroutine's messages get increasing sequences in its call order, and
// every reader hands them over in that order.
func TestWriteOrderDirectAndQueued(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	d := &seen{}
	nodes[1].s.Deliver(d.fn)
	first := nodes[1].s.Head() + 1
	const writers, per = 8, 250
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			seqs := make([]uint64, per)
			var left sync.WaitGroup
			left.Add(per)
			for i := range per {
				nodes[0].s.Store(msg(fmt.Sprint("order/", w), fmt.Sprintf("w%d-%d", w, i)), func(seq uint64, err error) {
					if err != nil {
						t.Errorf("writer %d, message %d: %v", w, i, err)
					}
					seqs[i] = seq
					left.Done()
				})
			}
			left.Wait()
			for i := 1; i < per; i++ {
				if seqs[i] <= seqs[i-1] {
					t.Errorf("writer %d: message %d has seq %d after %d: out of call order", w, i, seqs[i], seqs[i-1])
					return
				}
			}
		})
	}
	wg.Wait()
	eventually(t, testWait, "the reader", func() bool { return d.len() >= writers*per })
	d.check(t, "n1", first, first+writers*per-1)
	next := make([]int, writers)
	d.mu.Lock()
	for _, p := range d.msgs {
		var w, i int
		fmt.Sscanf(p, "w%d-%d", &w, &i)
		if i != next[w] {
			t.Errorf("writer %d: the reader handed over message %d, want %d", w, i, next[w])
		}
		next[w] = i + 1
	}
	d.mu.Unlock()
	// Eight busy writers may keep the queue from ever being empty on a
	// loaded machine: one more write, made once everything is done, goes
	// out directly.
	mustStore(t, nodes[0].s, msg("order/last", "last"))
	c := nodes[0].s.Counters()
	if c.Direct == 0 {
		t.Error("no write was published by its caller")
	}
	t.Logf("%d of %d writes published by their callers", c.Direct, c.Stored)
}
