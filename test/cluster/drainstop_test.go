package cluster_test

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
)

// TestDrainUndoWhileStopping: a node drains because it got SIGTERM;
// `culex cluster drain --undo` is refused (it would take new clients in
// while the node stops and cut the drain short), and the drain goes on
// at its rate until no client is left, then the node exits.
func TestDrainUndoWhileStopping(t *testing.T) {
	const rate, n = 4, 12
	c := clustertest.Start(t, clustertest.Options{Cores: 3, ClusterExtra: "drain_rate: " + strconv.Itoa(rate),
		Extra: "shutdown_timeout: 60s\n"})
	n0, n1 := c.Nodes[0], c.Nodes[1]
	d := newDrainees()
	for i := range n {
		d.v5(t, n1.MQTT(), "stop-"+strconv.Itoa(i))
	}
	stopped := make(chan struct{})
	go func() { n1.Stop(); close(stopped) }()
	d.wait(t, 1) // the drain is under way

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, clustertest.Binary(t), "cluster", "drain", n1.Name, "--undo", "-c", n0.ConfigFile())
	cmd.Env = clustertest.Environ()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stopping") {
		t.Errorf("culex cluster drain --undo on a stopping node: %v, %q; want it refused (node stopping)", err, out)
	}
	checkStopDrain(t, d.wait(t, n-1), rate, n1, stopped)
}

// TestWholeClusterStops: every core of a cluster gets SIGTERM at once (a
// whole deployment stopped) and each exits cleanly within a few seconds,
// though the cores lose their JetStream quorum as they go; three times
// over. A node used to wait out the JetStream API timeout (5 s) for the
// watches it stopped whenever it outlived the meta leader: it asked the
// leader to delete their consumers (watch.Stop), and no answer came. That
// is a race, lost in most rounds (registry.TestFollowEndsWithoutStop is
// the deterministic test).
func TestWholeClusterStops(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3})
	const bound = 4 * time.Second // under the 5 s API timeout
	for round := range 3 {
		if round > 0 {
			for _, n := range c.Nodes {
				n.Restart()
			}
			for _, n := range c.Nodes {
				n.WaitReady()
			}
		}
		took := make([]time.Duration, len(c.Nodes))
		var wg sync.WaitGroup
		for i, n := range c.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				n.Stop()
				took[i] = time.Since(start)
			}()
		}
		wg.Wait()
		for i, n := range c.Nodes {
			if took[i] > bound {
				t.Errorf("round %d: %s took %v to exit after SIGTERM; want under %v", round+1, n.Name, took[i].Round(time.Millisecond), bound)
			}
			if !strings.Contains(n.Log(), "msg=stopped") {
				t.Errorf("round %d: %s did not stop cleanly:\n%s", round+1, n.Name, n.Log())
			}
		}
	}
}
