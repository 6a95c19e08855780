package psession

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go"
)

// TestReaderOnLogLeader: every node's reader is a consumer on the log's
// leader, where a message is delivered once a majority stored it (on a
// follower, one fsync later: BenchmarkStoreDeliver). JetStream places a
// consumer of one replica on any replica at random, so without placing
// all three are there by chance one time in 27.
func TestReaderOnLogLeader(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	for _, nd := range nodes {
		nd.s.Deliver(func(uint64, string, *broker.Message) {})
	}
	info, err := nodes[0].s.plog.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	for i, nd := range nodes {
		eventually(t, testWait, "the reader's consumer", func() bool { return nd.s.readerName() != "" })
		c, err := nd.s.plog.Consumer(t.Context(), nd.s.readerName())
		if err != nil {
			t.Fatalf("n%d: %v", i, err)
		}
		if host := consumerHost(c); host != leader {
			t.Errorf("n%d: the reader's consumer is on %s, the log's leader is %s", i, host, leader)
		}
		if !nd.s.rd.onLeader.Load() {
			t.Errorf("n%d: the reader does not know it is on the leader", i)
		}
	}
}

// TestReaderFollowsLogLeader: when the log's leader moves, every reader
// moves its consumer to the new leader (a consumer stays where it was
// made), while messages are stored: each reader hands over every
// message once, in order, and none of them counts a loss.
func TestReaderFollowsLogLeader(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	ds := make([]*seen, len(nodes))
	for i, nd := range nodes {
		ds[i] = &seen{}
		nd.s.Deliver(ds[i].fn)
	}
	leader := logLeader(t, nodes[0])
	for i, nd := range nodes {
		eventually(t, testWait, fmt.Sprintf("n%d's reader on the log's leader", i), func() bool { return readerHost(nd) == leader })
	}
	first := nodes[0].s.Head() + 1
	stored := make(chan uint64, 1)
	go func() {
		var last uint64
		for i := range 100 {
			// A Store fails while the log has no leader (the step
			// down); it is made again, for at most testWait.
			for deadline := time.Now().Add(testWait); ; {
				ch := make(chan result, 1)
				nodes[i%3].s.Store(msg("t", fmt.Sprint(i)), func(seq uint64, err error) { ch <- result{seq, err} })
				r := <-ch // within the Store's Timeout
				if r.err == nil {
					last = max(last, r.seq)
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("Store %d: %v", i, r.err)
					break
				}
				time.Sleep(10 * time.Millisecond) // polling, as eventually
			}
		}
		stored <- last
	}()
	to := ""
	for i := range nodes {
		if name := nodes[i].f.NodeName(); name != leader {
			to = name
			break
		}
	}
	for logLeader(t, nodes[0]) != to {
		body := `{"placement":{"preferred":"` + to + `"}}`
		if _, err := nodes[0].nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+nodes[0].s.LogStream(), []byte(body), 5*time.Second); err != nil {
			t.Logf("step down: %v", err)
		}
		eventually(t, testWait, "the log's leader", func() bool { return logLeader(t, nodes[0]) != "" })
	}
	for i, nd := range nodes {
		eventually(t, testWait, fmt.Sprintf("n%d's reader on the log's new leader %s", i, to), func() bool { return readerHost(nd) == to })
	}
	last := <-stored
	last = max(last, mustStore(t, nodes[0].s, msg("t", "after")))
	for i, nd := range nodes {
		eventually(t, testWait, fmt.Sprintf("n%d's reader", i), func() bool { return nd.s.Head() >= last })
		ds[i].check(t, fmt.Sprintf("n%d", i), first, last)
		if n := nd.s.Counters().ReaderLost; n != 0 {
			t.Errorf("n%d: the reader counted %d losses, want 0 (a move is not a loss)", i, n)
		}
	}
}

// logLeader is the name of the log's leader, "" when none answers.
func logLeader(t *testing.T, nd *node) string {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	info, err := nd.s.plog.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// readerHost is the server the node's reader reads from.
func readerHost(nd *node) string {
	nd.s.rd.mu.Lock()
	defer nd.s.rd.mu.Unlock()
	if c := nd.s.rd.cur; c != nil && !c.stopped {
		return c.host
	}
	return ""
}

// TestReaderPullBatches: the reader asks the log's leader for deliveries
// in batches of readerBatch, so that a slow pull round trip does not leave
// its consumer without a request while messages wait: 3,000 messages take
// at most three pull requests (nats.go's default of 500, asked again at
// half, took twelve).
func TestReaderPullBatches(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	d := &seen{}
	nodes[1].s.Deliver(d.fn)
	eventually(t, testWait, "the reader's consumer", func() bool { return nodes[1].s.readerName() != "" })
	var pulls atomic.Int64
	sub, err := nodes[2].nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+nodes[1].s.LogStream()+"."+nodes[1].s.readerName(),
		func(*nats.Msg) { pulls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nodes[2].nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 3000
	body := strings.Repeat("p", 64)
	var left sync.WaitGroup
	left.Add(n)
	for range n {
		nodes[0].s.Store(msg("pull/t", body), func(_ uint64, err error) {
			if err != nil {
				t.Error(err)
			}
			left.Done()
		})
	}
	left.Wait()
	eventually(t, testWait, "the reader", func() bool { return d.len() >= n })
	if p := pulls.Load(); p > n/(readerBatch/2)+1 {
		t.Errorf("the reader sent %d pull requests for %d messages, want at most %d", p, n, n/(readerBatch/2)+1)
	}
}
