package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/clustertest"
)

// TestClusterHarness starts and stops both clusters of `culex bench
// compare --cluster`: three culex serve nodes and three nats-server nodes
// with MQTT and JetStream, each on free ports with its own store, ready
// once a message crosses from the first node to each other one.
func TestClusterHarness(t *testing.T) {
	specs := []clusterSpec{
		{kind: culexCluster, bin: clustertest.Binary(t)},
		{kind: natsCluster, bin: brokertest.Tool(t, "nats-server", "nats-server")},
	}
	for _, s := range specs {
		t.Run(s.kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d, err := s.start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.procs) != clusterNodes || len(d.subs) != clusterNodes-1 {
				t.Fatalf("%d processes, %d subscriber nodes", len(d.procs), len(d.subs))
			}
			for _, p := range d.subs {
				if err := crossProbe(ctx, d.pub, p, time.Minute); err != nil {
					t.Error(err)
				}
			}
			d.stop()
			for _, b := range d.procs {
				select {
				case <-b.exited:
				default:
					t.Errorf("%s still runs after stop", b.name)
				}
			}
			if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
				t.Errorf("%s left behind: %v", d.dir, err)
			}
		})
	}
}
