package fault_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/faultfs"
)

// power is the power-loss layer: each core's data_dir is a faultfs mount
// (internal/faultfs) of a backing directory of its own, which holds only
// what the core fsynced. cut drops the rest, as a power loss does, and
// remount serves what survived to the restarted core.
type power struct {
	mu  sync.Mutex
	t   testing.TB
	fss map[string]*faultfs.FS // node name -> its mount
}

// newPower makes the layer; register it before the cluster starts, so
// that its cleanup (unmounting) runs after the nodes were stopped.
func newPower(t testing.TB) *power {
	p := &power{t: t, fss: map[string]*faultfs.FS{}}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for name, fs := range p.fss {
			// Logged, not failed: unmounting after the nodes stopped
			// says nothing of what the scenario checked.
			if err := fs.Close(); err != nil {
				t.Logf("closing the power-loss layer of %s: %v", name, err)
			}
		}
	})
	return p
}

// dataDir is the clustertest.Options.DataDir hook: cores get a mount,
// replicants (which keep nothing) their plain directory.
func (p *power) dataDir(t testing.TB, n *clustertest.Node, dir string) string {
	if n.Role != clustertest.Core {
		return dir
	}
	fs, err := faultfs.Mount(nil, dir+"-synced", dir)
	if err != nil {
		t.Fatalf("power-loss layer for %s: %v", n.Name, err)
	}
	p.mu.Lock()
	p.fss[n.Name] = fs
	p.mu.Unlock()
	return dir
}

// cut discards what node n wrote and did not fsync, and mounts what
// survived again for its restart.
func (p *power) cut(n *clustertest.Node) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	fs := p.fss[n.Name]
	if fs == nil {
		return fmt.Errorf("%s has no power-loss layer", n.Name)
	}
	if err := fs.Cut(); err != nil {
		return err
	}
	st := fs.Stats()
	p.t.Logf("power loss of %s: %d bytes and %d namespace operations not synced, discarded (%d syncs before)",
		n.Name, st.DiscardedBytes, st.DiscardedOps, st.Syncs)
	again, err := faultfs.Mount(nil, fs.Backing(), fs.Mountpoint())
	if err != nil {
		return err
	}
	p.fss[n.Name] = again
	return nil
}
