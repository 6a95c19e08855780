package psession

// The tests' cluster: real embedded fabrics (NATS servers with JetStream,
// sync always, as `culex serve` runs them) in the test process, on free
// loopback ports.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/fabric"
	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// testWait bounds every wait for an event in the tests.
const testWait = 30 * time.Second

// node is one core: its fabric (nil for a server alone) and its Store.
type node struct {
	f  *fabric.Fabric
	nc *nats.Conn
	s  *Store
}

// startCluster starts n cores and a Store on each (Timeout 5 s unless
// mod changes it); the test's cleanup closes them. One core is a NATS
// server alone (JetStream not clustered, sync always), as a core without
// peers cannot elect a meta leader.
func startCluster(t testing.TB, n int, mod func(*Config)) []*node {
	t.Helper()
	if n == 1 {
		return startStores(t, []*node{{nc: startAlone(t)}}, mod)
	}
	nodes := startFabrics(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, nd := range nodes {
		if err := nd.f.WaitReady(ctx, time.Hour); err != nil {
			t.Fatalf("%s: %v", nd.f.NodeName(), err)
		}
	}
	return startStores(t, nodes, mod)
}

// startFabrics starts n fabrics routed to each other on fresh ports,
// again on other ports when one could not listen (a port taken since
// FreePorts released it: other packages' tests run beside these).
func startFabrics(t testing.TB, n int) []*node {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := clustertest.FreePorts(t, n)
		nodes := make([]*node, 0, n)
		var err error
		for i := range n {
			c := config.Default().Cluster
			c.NodeName, c.Secret = "n"+strconv.Itoa(i), "s3cret"
			c.Listen = "127.0.0.1:" + strconv.Itoa(ports[i])
			for _, p := range ports {
				c.Peers = append(c.Peers, "127.0.0.1:"+strconv.Itoa(p))
			}
			var f *fabric.Fabric
			if f, err = fabric.Start(c, t.TempDir(), nil); err != nil {
				break
			}
			t.Cleanup(f.Close)
			nodes = append(nodes, &node{f: f, nc: f.Conn()})
		}
		if err == nil {
			return nodes
		}
		for _, nd := range nodes {
			nd.f.Close()
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("fabrics not started (attempt %d): %v; again on other ports", attempt, err)
	}
}

// startAlone starts a NATS server with JetStream alone and connects to it
// in-process.
func startAlone(t testing.TB) *nats.Conn {
	t.Helper()
	srv := startAloneServer(t)
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startAloneServer starts a NATS server with JetStream alone (sync
// always) on a loopback port.
func startAloneServer(t testing.TB) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return srv
}

// startStores makes and starts a Store on each node's connection.
func startStores(t testing.TB, nodes []*node, mod func(*Config)) []*node {
	t.Helper()
	n := len(nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, nd := range nodes {
		cfg := Config{Conn: nd.nc, Cluster: "culex", Replicas: min(n, 3), Timeout: 5 * time.Second, SweepEvery: -1}
		if mod != nil {
			mod(&cfg)
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		nd.s = s
	}
	// Started together: each opens (or finds) the stream and the bucket.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range nodes {
		wg.Go(func() { errs[i] = nd.s.Start(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("n%d: Start: %v", i, err)
		}
	}
	return nodes
}

// msg is a QoS 1 message on topic with payload p.
func msg(topic, p string) *broker.Message {
	return &broker.Message{Topic: topic, Payload: []byte(p), QoS: 1, Origin: "pub"}
}

// result is what a done got.
type result struct {
	seq uint64
	err error
}

// store stores m and waits for its done (bounded).
func store(t testing.TB, s *Store, m *broker.Message) (uint64, error) {
	t.Helper()
	ch := make(chan result, 1)
	s.Store(m, func(seq uint64, err error) { ch <- result{seq, err} })
	return waitResult(t, ch)
}

func storeFor(t testing.TB, s *Store, id string, m *broker.Message) (uint64, error) {
	t.Helper()
	ch := make(chan result, 1)
	s.StoreFor(id, m, func(seq uint64, err error) { ch <- result{seq, err} })
	return waitResult(t, ch)
}

func waitResult(t testing.TB, ch <-chan result) (uint64, error) {
	t.Helper()
	select {
	case r := <-ch:
		return r.seq, r.err
	case <-time.After(60 * time.Second):
		t.Fatal("done never called")
		return 0, nil
	}
}

// mustStore stores m, failing the test on an error.
func mustStore(t testing.TB, s *Store, m *broker.Message) uint64 {
	t.Helper()
	seq, err := store(t, s, m)
	if err != nil {
		t.Fatalf("Store %s: %v", m.Topic, err)
	}
	return seq
}

func save(t testing.TB, s *Store, r *broker.SessionRecord) error {
	t.Helper()
	ch := make(chan result, 1)
	s.Save(r, func(rev uint64, err error) { ch <- result{rev, err} })
	_, err := waitResult(t, ch)
	return err
}

func mustSave(t testing.TB, s *Store, r *broker.SessionRecord) {
	t.Helper()
	if err := save(t, s, r); err != nil {
		t.Fatalf("Save %s: %v", r.ClientID, err)
	}
}

// backlog reads a backlog and returns the topics and payloads read as
// "topic=payload@seq", "id:topic=payload@seq" for a message stored for
// id alone (StoreFor).
func backlog(t testing.TB, s *Store, id string, filters []string, from, to uint64) ([]string, uint64) {
	t.Helper()
	var got []string
	dropped, err := s.Backlog(context.Background(), id, filters, from, to, func(seq uint64, cid string, m *broker.Message) error {
		if cid != "" {
			cid += ":"
		}
		got = append(got, fmt.Sprintf("%s%s=%s@%d", cid, m.Topic, m.Payload, seq))
		return nil
	})
	if err != nil {
		t.Fatalf("Backlog %v (%d, %d]: %v", filters, from, to, err)
	}
	return got, dropped
}

// eventually polls cond until it holds, failing after d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling
	}
}
