package fabric

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestTopologyMeasure measures replicants as route members against
// replicants as leaf nodes of the cores, 3 cores + 10 replicants, all
// in-process servers of this test process. It runs only with
// CULEX_TOPOLOGY=1 (docs/cluster.md has the numbers).
func TestTopologyMeasure(t *testing.T) {
	if os.Getenv("CULEX_TOPOLOGY") == "" {
		t.Skip("set CULEX_TOPOLOGY=1 to measure")
	}
	for _, leaf := range []bool{false, true} {
		name := "routes"
		if leaf {
			name = "leafnodes"
		}
		t.Run(name, func(t *testing.T) { measureTopology(t, leaf) })
	}
}

func measureTopology(t *testing.T, leaf bool) {
	const cores, reps = 3, 10
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()
	ports := freePorts(t, cores+reps)
	leafPorts := freePorts(t, cores)
	var routes []*url.URL
	for i := range cores {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(ports[i]), User: url.UserPassword("u", "p")})
	}
	var leafURLs []*url.URL
	for i := range cores {
		leafURLs = append(leafURLs, &url.URL{Scheme: "nats-leaf", Host: "127.0.0.1:" + strconv.Itoa(leafPorts[i]), User: url.UserPassword("u", "p")})
	}
	start := time.Now()
	var srvs []*server.Server
	for i := range cores + reps {
		o := &server.Options{ServerName: "n" + strconv.Itoa(i), Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true}
		core := i < cores
		if core || !leaf {
			o.Cluster = server.ClusterOpts{Name: "m", Host: "127.0.0.1", Port: ports[i], Username: "u", Password: "p", PoolSize: -1}
			o.Routes = routes
		}
		if core {
			o.JetStream, o.StoreDir, o.SyncAlways = true, t.TempDir(), true
			if leaf {
				o.JetStreamDomain = "core"
				o.LeafNode = server.LeafNodeOpts{Host: "127.0.0.1", Port: leafPorts[i], Username: "u", Password: "p"}
			}
		} else if leaf {
			o.LeafNode = server.LeafNodeOpts{Remotes: []*server.RemoteLeafOpts{{URLs: leafURLs}}}
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		defer s.Shutdown()
		srvs = append(srvs, s)
	}
	conns := make([]*nats.Conn, len(srvs))
	for i, s := range srvs {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("not ready")
		}
		nc, err := nats.Connect("", nats.InProcessServer(s))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	// Formed: every server has its links, and JetStream answers on the
	// last replicant.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for i, s := range srvs {
			switch {
			case !leaf && s.NumRoutes() < cores+reps-1:
				ok = false
			case leaf && i < cores && s.NumRoutes() < cores-1:
				ok = false
			case leaf && i >= cores && s.NumLeafNodes() < 1:
				ok = false
			}
		}
		var jsErr error
		if ok {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			js, _ := jetstream.New(conns[len(conns)-1])
			if leaf {
				js, _ = jetstream.NewWithDomain(conns[len(conns)-1], "core")
			}
			_, jsErr = js.AccountInfo(ctx)
			cancel()
			if jsErr == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			var st []string
			for _, s := range srvs {
				st = append(st, fmt.Sprintf("%s r%d l%d", s.Name(), s.NumRoutes(), s.NumLeafNodes()))
			}
			t.Fatalf("not formed: links ok %v, JetStream %v; %v", ok, jsErr, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	formed := time.Since(start)
	links := 0
	for i, s := range srvs {
		links += s.NumRoutes()
		if leaf && i < cores {
			links += s.NumLeafNodes()
		}
	}
	if !leaf {
		links /= 2
	} else {
		links = links - (cores * (cores - 1) / 2) // each core-core route counted twice
	}
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	heap := int64(ms1.HeapInuse) - int64(ms0.HeapInuse)
	goroutines := runtime.NumGoroutine() - g0

	// Interest propagation and throughput, replicant to replicant (n3 ->
	// n12), and replicant to a core (n4 -> n1).
	pubC, subC := conns[cores], conns[len(conns)-1]
	var got atomic.Int64
	done := make(chan struct{})
	const n = 200000
	subAt := time.Now()
	sub, _ := subC.Subscribe("bench.x", func(*nats.Msg) {
		if got.Add(1) == n {
			close(done)
		}
	})
	sub.SetPendingLimits(-1, -1)
	subC.Flush()
	probe, _ := subC.SubscribeSync("probe")
	subC.Flush()
	for {
		pubC.Publish("probe", nil)
		pubC.Flush()
		if _, err := probe.NextMsg(5 * time.Millisecond); err == nil {
			break
		}
	}
	interest := time.Since(subAt)
	payload := make([]byte, 64)
	t0 := time.Now()
	for range n {
		pubC.Publish("bench.x", payload)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("got %d of %d", got.Load(), n)
	}
	rate := float64(n) / time.Since(t0).Seconds()
	// Round trips.
	subC.Subscribe("rtt", func(m *nats.Msg) { m.Respond(nil) })
	subC.Flush()
	var rtts []time.Duration
	for i := 0; len(rtts) < 2000; i++ {
		a := time.Now()
		if _, err := pubC.Request("rtt", nil, 5*time.Second); err != nil {
			if err == nats.ErrNoResponders && i < 1000 && len(rtts) == 0 {
				time.Sleep(time.Millisecond) // interest still on its way
				continue
			}
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(a))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	t.Logf("%s: formed+JetStream in %v; %d links; heap +%.1f MiB; goroutines +%d; interest visible in %v; replicant->replicant %.0f msg/s (64 B); request RTT p50 %v p99 %v",
		map[bool]string{false: "routes", true: "leafnodes"}[leaf], formed.Round(time.Millisecond), links,
		float64(heap)/(1<<20), goroutines, interest.Round(time.Microsecond), rate,
		rtts[len(rtts)/2].Round(time.Microsecond), rtts[len(rtts)*99/100].Round(time.Microsecond))
}
