package cluster_test

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

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
