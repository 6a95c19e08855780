package registry

// The tests' NATS: clustered servers with JetStream in the test process,
// on free loopback ports.

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster is n routed NATS servers with JetStream.
type natsCluster struct {
	Servers []*server.Server
}

// startNATS starts n clustered servers (n >= 1) and waits until JetStream is
// usable; the test's cleanup shuts them down.
func startNATS(t testing.TB, n int) *natsCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if c, ok := tryNATS(t, n); ok {
			c.waitJetStream(t)
			return c
		}
		if attempt == 3 {
			t.Fatalf("nats servers not ready after %d attempts", attempt)
		}
		// A route port may have been taken between FreePort and the
		// server's listen (another package's tests run beside these).
		t.Logf("nats servers not ready (attempt %d): again on other ports", attempt)
	}
}

// tryNATS starts n servers on fresh ports; false (every server shut
// down) when one is not ready within 15 s.
func tryNATS(t testing.TB, n int) (*natsCluster, bool) {
	c := &natsCluster{}
	// Every server routes to every other: JetStream's meta group needs its
	// peers from the start.
	ports := clustertest.FreePorts(t, n) // distinct: held open together
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i]}
			for j, p := range ports {
				if j != i {
					o.Routes = append(o.Routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
				}
			}
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(15 * time.Second) {
			for _, s := range c.Servers {
				s.Shutdown()
			}
			return nil, false
		}
	}
	return c, true
}

// Conn connects to server i; the test's cleanup closes it.
func (c *natsCluster) Conn(t testing.TB, i int) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.Servers[i].ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// waitJetStream waits until a replicated stream can be made (the meta
// leader is elected and every server is a peer).
func (c *natsCluster) waitJetStream(t testing.TB) {
	t.Helper()
	nc := c.Conn(t, 0)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "natstest_ready", Replicas: len(c.Servers), Subjects: []string{"natstest.ready"}})
		if err == nil {
			err = js.DeleteStream(ctx, "natstest_ready")
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetstream not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the meta leader's election
	}
}
