package psession

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// hardCluster is three cores whose routes all go through proxies, one per
// pair (the core of the higher index solicits the route), so that a core can die as from SIGKILL: every route
// to it closes at once, it sends no shutdown notice and hands no
// leadership over (a server's Shutdown steps its leaders down first).
type hardCluster struct {
	nodes   []*node
	srvs    []*server.Server
	names   []string
	proxies [][]*proxy // proxies[i][j], j < i: i's route to j
}

func startHardCluster(t *testing.T) *hardCluster {
	t.Helper()
	const n = 3
	ports := clustertest.FreePorts(t, n)
	h := &hardCluster{proxies: make([][]*proxy, n)}
	for i := range n {
		h.proxies[i] = make([]*proxy, n)
		for j := range i {
			h.proxies[i][j] = startProxy(t, "127.0.0.1:"+strconv.Itoa(ports[j]))
		}
	}
	for i := range n {
		// A route to itself (dropped by the server) makes JetStream
		// clustered on the first core.
		self, _ := url.Parse("nats://127.0.0.1:" + strconv.Itoa(ports[i]))
		routes := []*url.URL{self}
		for _, p := range h.proxies[i][:i] {
			u, _ := url.Parse(p.URL())
			routes = append(routes, u)
		}
		name := "h" + strconv.Itoa(i)
		srv, err := server.NewServer(&server.Options{ServerName: name, Host: "127.0.0.1", Port: server.RANDOM_PORT,
			NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir(), SyncAlways: true,
			// Advertised at a port nobody listens on: the routes the
			// servers learn from each other (gossip) never connect, so
			// every route goes through its proxy.
			Cluster: server.ClusterOpts{Name: "hard", Host: "127.0.0.1", Port: ports[i], Advertise: "127.0.0.1:1",
				NoAdvertise: true, PoolSize: -1, ConnectRetries: -1},
			Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		h.srvs, h.names = append(h.srvs, srv), append(h.names, name)
		h.nodes = append(h.nodes, &node{nc: nc})
	}
	// On a failure, what each core knows of the others (a start that
	// found no peers for placement, once, under the race detector).
	t.Cleanup(func() {
		if t.Failed() {
			h.logMeta(t)
		}
	})
	startStores(t, h.nodes, debugLog)
	return h
}

// logMeta logs each core's routes and view of the meta group.
func (h *hardCluster) logMeta(t *testing.T) {
	for i, srv := range h.srvs {
		jsz, err := srv.Jsz(&server.JSzOptions{})
		if err != nil || jsz.Meta == nil {
			t.Logf("%s: %d routes, no meta group (%v)", h.names[i], srv.NumRoutes(), err)
			continue
		}
		var peers []string
		for _, r := range jsz.Meta.Replicas {
			peers = append(peers, fmt.Sprintf("%s current=%v offline=%v active=%v", r.Name, r.Current, r.Offline, r.Active))
		}
		t.Logf("%s: %d routes, meta leader %q, size %d, peers %v", h.names[i], srv.NumRoutes(), jsz.Meta.Leader, jsz.Meta.Size, peers)
	}
}

// kill cuts core i off: every route to and from it closes and stays
// refused.
func (h *hardCluster) kill(i int) {
	for j := range h.nodes {
		if j < i {
			h.proxies[i][j].Cut()
		} else if j > i {
			h.proxies[j][i].Cut()
		}
	}
}

// index is the index of the core named name, -1 if none.
func (h *hardCluster) index(name string) int { return slices.Index(h.names, name) }

// metaLeader is the meta leader as core i sees it.
func (h *hardCluster) metaLeader(i int) string {
	jsz, err := h.srvs[i].Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// logLeader is the log's leader as core i's Store is told it, "" if none
// answers.
func (h *hardCluster) logLeader(ctx context.Context, i int) string {
	info, err := h.nodes[i].s.plog.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// TestReaderRecoversAfterCoreLoss: a core dies (as from SIGKILL) that
// hosts another node's reader (its consumer) and leads the log, or is
// the meta leader while the log's leader lives. Once the log and the meta
// group both have a leader again, a message stored reaches the Deliver of every core left
// within readerRecovery (plus slack for the loaded test machine), with no
// gap and no repeat.
func TestReaderRecoversAfterCoreLoss(t *testing.T) {
	for _, role := range []string{"log leader", "meta leader"} {
		t.Run(role, func(t *testing.T) { testReaderRecovers(t, role == "meta leader") })
	}
}

func testReaderRecovers(t *testing.T, meta bool) {
	h := startHardCluster(t)
	nodes := h.nodes
	stream := nodes[0].s.LogStream()
	ds := make([]*seen, 3)
	firsts := make([]uint64, 3)
	for i, nd := range nodes {
		ds[i], firsts[i] = &seen{}, nd.s.Head()+1
		nd.s.Deliver(ds[i].fn)
	}
	dead := -1
	eventually(t, testWait, "the leader", func() bool {
		if meta {
			dead = h.index(h.metaLeader(0))
		} else {
			dead = h.index(h.logLeader(t.Context(), 0))
		}
		return dead >= 0
	})
	// moveLog makes core i the log's leader.
	moveLog := func(i int) {
		for h.logLeader(t.Context(), 0) != h.names[i] {
			body := `{"placement":{"preferred":"` + h.names[i] + `"}}`
			if _, err := nodes[0].nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(body), 5*time.Second); err != nil {
				t.Logf("step down: %v", err)
			}
			eventually(t, testWait, "the log's leader", func() bool { return h.logLeader(t.Context(), 0) != "" })
		}
	}
	if meta {
		// A reader is placed on the log's leader: first the core that
		// dies leads the log too.
		moveLog(dead)
	}
	// Another core's reader reads through the core that dies: its Store
	// starts again until the log places its consumer there.
	y := (dead + 2) % 3
	for try := 0; hostOfReader(t, h, y) != dead; try++ {
		if try == 30 {
			t.Fatalf("%s's reader never placed on %s", h.names[y], h.names[dead])
		}
		nodes[y].s.Close()
		startStores(t, []*node{nodes[y]}, func(c *Config) { debugLog(c); c.Replicas = 3 })
		ds[y], firsts[y] = &seen{}, nodes[y].s.Head()+1
		nodes[y].s.Deliver(ds[y].fn)
	}
	if meta {
		// The log's leader moves (the reader stays) and lives: the
		// readers wait for the meta leader.
		moveLog((dead + 1) % 3)
	}
	var before uint64
	eventually(t, testWait, "a Store before the loss", func() bool {
		// One may fail while the log's new leader (moveLog) starts.
		q, err := store(t, nodes[y].s, msg("t", "before"))
		before = q
		return err == nil
	})
	for i := range nodes {
		eventually(t, testWait, h.names[i]+"'s reader", func() bool { return nodes[i].s.Head() >= before })
	}

	metaWas := h.metaLeader(dead)
	killed := time.Now()
	h.kill(dead)
	var left []int
	for i := range nodes {
		if i != dead {
			left = append(left, i)
		}
	}
	a := left[0]
	// The reader needs both leaders (the log's answers Info, the meta
	// group's makes the consumer): when the core that dies led both, the
	// two elections end at different times, and the bound counts from
	// the later.
	eventually(t, testWait, "the new leaders", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		l := h.logLeader(ctx, a)
		cancel()
		m := h.metaLeader(a)
		return l != "" && l != h.names[dead] && m != "" && m != h.names[dead]
	})
	elected := time.Now()
	var last uint64
	eventually(t, testWait, "a Store after the election", func() bool {
		q, err := store(t, nodes[a].s, msg("t", "after"))
		last = q
		return err == nil
	})
	for _, i := range left {
		eventually(t, time.Minute, h.names[i]+"'s reader after the loss", func() bool { return nodes[i].s.Head() >= last })
	}
	took := time.Since(elected)
	t.Logf("killed %s (%s's reader on it; the meta group's leader was %s): new leaders after %v, delivered %v after them",
		h.names[dead], h.names[y], metaWas, elected.Sub(killed), took)
	for _, i := range left {
		ds[i].check(t, h.names[i], firsts[i], last)
	}
	const slack = 2 * time.Second // the loaded test machine (the ordered consumer took 5 to 21 s)
	if took > readerRecovery+slack {
		t.Errorf("the readers delivered %v after the new leader, more than %v", took, readerRecovery+slack)
	}
}

// hostOfReader is the index of the core hosting the consumer of core i's
// reader.
func hostOfReader(t testing.TB, h *hardCluster, i int) int {
	t.Helper()
	host := -1
	eventually(t, testWait, h.names[i]+"'s reader", func() bool {
		name := h.nodes[i].s.readerName()
		if name == "" {
			return false
		}
		c, err := h.nodes[i].s.plog.Consumer(t.Context(), name)
		if err != nil || c.CachedInfo().Cluster == nil {
			return false
		}
		host = h.index(c.CachedInfo().Cluster.Leader)
		return host >= 0
	})
	return host
}

func debugLog(c *Config) {
	if os.Getenv("PSESSION_DEBUG") != "" {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}
