package psession

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// from returns the sequences handed over after h, and whether they
// begin with every one of h+1..last, once, in order.
func (d *seen) from(h, last uint64) ([]uint64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var got []uint64
	for _, q := range d.seqs {
		if q > h {
			got = append(got, q)
		}
	}
	if uint64(len(got)) < last-h {
		return got, false
	}
	for i, q := range got[:last-h] {
		if q != h+1+uint64(i) {
			return got, false
		}
	}
	return got, true
}

// counts are how many messages and starts j saw.
func (d *seen) counts() (msgs, starts int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seqs), len(d.starts)
}

// TestReaderOnDemand: with Config.ReaderOnDemand the reader does not run
// until held; HoldReader, while another node stores all the time, returns
// once Head is the reader's position, and every message stored from
// there on is handed over once, in order, after a start at Head (fails
// when HoldReader returns before the reader's position is read: the
// messages stored meanwhile go missing). Released, it stops after the
// linger; held again within the linger it goes on; held after its stop
// it starts again from the log's end.
func TestReaderOnDemand(t *testing.T) {
	const linger = 300 * time.Millisecond
	nodes := startCluster(t, 3, func(c *Config) {
		c.ReaderOnDemand = true
		c.ReaderLinger = linger
	})
	rd := nodes[1].s
	j := &seen{}
	rd.Deliver(j.fn)

	// A writer on another node, all the time.
	var last atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			seq, err := store(t, nodes[0].s, msg("t", fmt.Sprint(i)))
			if err != nil {
				t.Errorf("Store %d: %v", i, err)
				return
			}
			last.Store(seq)
		}
	})
	defer func() { close(stop); wg.Wait() }()
	eventually(t, testWait, "messages stored", func() bool { return last.Load() >= 20 })
	if c := rd.Counters(); c.ReaderStarts != 0 || rd.readerName() != "" {
		t.Fatalf("the reader runs unheld: %d starts, consumer %q", c.ReaderStarts, rd.readerName())
	}
	if n, _ := j.counts(); n != 0 {
		t.Fatalf("unheld, the reader handed over %d messages", n)
	}

	// held checks that every message stored after HoldReader returned
	// comes from the reader.
	held := func(round string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		_, starts := j.counts()
		if err := rd.HoldReader(ctx); err != nil {
			t.Fatalf("%s: HoldReader: %v", round, err)
		}
		h := rd.Head()
		target := last.Load() + 50
		eventually(t, testWait, round+": 50 more messages stored", func() bool { return last.Load() >= target })
		eventually(t, testWait, round+": the messages after the hold", func() bool {
			got, _ := j.from(h, target)
			return uint64(len(got)) >= target-h
		})
		if got, ok := j.from(h, target); !ok {
			t.Fatalf("%s: held at %d, the reader handed over %v, want every one of %d..%d once, in order", round, h, got, h+1, target)
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		if len(j.starts) > starts && j.starts[len(j.starts)-1] != h {
			t.Errorf("%s: the reader started at %d, Head said %d", round, j.starts[len(j.starts)-1], h)
		}
	}
	held("first hold")

	// Released and held again within the linger: it goes on.
	rd.ReleaseReader()
	held("held again within the linger")
	time.Sleep(2 * linger) // the linger's end passes: nothing may stop
	if c := rd.Counters(); c.ReaderStops != 0 || c.ReaderStarts != 1 {
		t.Errorf("held within the linger: %d starts, %d stops, want 1 and 0", c.ReaderStarts, c.ReaderStops)
	}
	// Held twice: released once, it still runs.
	if err := rd.HoldReader(t.Context()); err != nil {
		t.Fatal(err)
	}
	rd.ReleaseReader()
	time.Sleep(2 * linger)
	if c := rd.Counters(); c.ReaderStops != 0 {
		t.Errorf("still held once: %d stops", c.ReaderStops)
	}
	rd.ReleaseReader()
	eventually(t, testWait, "the reader to stop", func() bool { return rd.Counters().ReaderStops == 1 })
	n, _ := j.counts()
	target := last.Load() + 20
	eventually(t, testWait, "20 more messages stored", func() bool { return last.Load() >= target })
	if m, _ := j.counts(); m != n {
		t.Errorf("stopped, the reader handed over %d more messages", m-n)
	}

	held("held after a stop")
	if c := rd.Counters(); c.ReaderStarts != 2 {
		t.Errorf("%d starts, want 2", c.ReaderStarts)
	}
}
