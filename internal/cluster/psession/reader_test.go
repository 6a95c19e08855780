package psession

import (
	"testing"

	"github.com/culexmq/culex/internal/broker"
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
