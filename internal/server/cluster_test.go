package server

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestAloneStartsNoNATS: a node without cluster settings starts no NATS
// server, has no router, and is ready at once.
func TestAloneStartsNoNATS(t *testing.T) {
	srv, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if srv.Cluster() != nil || srv.fabric != nil {
		t.Fatal("a node alone has a cluster router or fabric")
	}
	if err := srv.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	if strings.Contains(string(buf), "nats-io/") {
		t.Fatalf("NATS goroutines run on a node alone:\n%s", buf)
	}
}

// TestClusterOfOne: with cluster.listen set, the fabric starts before the
// broker, the node becomes ready, and Shutdown stops it.
func TestClusterOfOne(t *testing.T) {
	cfg := testConfig(t)
	cfg.Cluster.Listen, cfg.Cluster.Secret, cfg.Cluster.NodeName = "127.0.0.1:0", "s", "one"
	cfg.Cluster.Role = "replicant" // no JetStream: a core alone waits for peers
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if srv.Cluster() == nil {
		t.Fatal("no router")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Ready(ctx); err == nil {
		t.Fatal("ready after shutdown")
	}
}
