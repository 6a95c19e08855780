package fabric

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

func freePorts(t *testing.T, n int) []int { return clustertest.FreePorts(t, n) }

func clusterCfg(name string, role string, port int, peers []int) config.Cluster {
	c := config.Default().Cluster
	c.NodeName, c.Role, c.Secret = name, role, "s3cret"
	c.Listen = "127.0.0.1:" + strconv.Itoa(port)
	for _, p := range peers {
		c.Peers = append(c.Peers, "127.0.0.1:"+strconv.Itoa(p))
	}
	return c
}

// TestThreeCoresAndReplicant: three cores and a replicant join, become
// ready, and JetStream works from the replicant.
func TestThreeCoresAndReplicant(t *testing.T) {
	ports := freePorts(t, 4)
	var fs []*Fabric
	for i := range 4 {
		role := "core"
		if i == 3 {
			role = "replicant"
		}
		f, err := Start(clusterCfg("n"+strconv.Itoa(i), role, ports[i], ports[:3]), t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fs = append(fs, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, f := range fs {
		if err := f.WaitReady(ctx, time.Hour); err != nil {
			t.Fatalf("%s: %v", f.NodeName(), err)
		}
	}
	if fs[3].Role() != Replicant || fs[3].MetaLeader() != "" {
		t.Errorf("replicant: role %s leader %q", fs[3].Role(), fs[3].MetaLeader())
	}
	kv, err := fs[3].JetStream().CreateKeyValue(ctx, jetstreamKV("t"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("v")); err == nil {
		t.Error("second Create of a key succeeded")
	}
}

// TestRouteNeedsSecret: a node with the wrong secret never joins.
func TestRouteNeedsSecret(t *testing.T) {
	ports := freePorts(t, 2)
	a, err := Start(clusterCfg("a", "core", ports[0], nil), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c := clusterCfg("b", "replicant", ports[1], ports[:1])
	c.Secret = "wrong"
	b, err := Start(c, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The positive event: a third node with the right secret joins a.
	ports2 := freePorts(t, 1)
	g, err := Start(clusterCfg("g", "replicant", ports2[0], ports[:1]), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	deadline := time.Now().Add(20 * time.Second)
	for g.Routes() == 0 || a.Routes() == 0 { // each side registers the route on its own
		if time.Now().After(deadline) {
			t.Fatal("the node with the right secret did not join")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := b.Routes(); n != 0 {
		t.Errorf("node with the wrong secret has %d routes", n)
	}
	if n := a.Routes(); n != 1 {
		t.Errorf("core has %d routes, want 1 (g only)", n)
	}
}

func jetstreamKV(name string) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: name, Replicas: 3}
}

// TestExternalNATS: with cluster.nats_url the node embeds nothing and
// uses the external NATS's JetStream.
func TestExternalNATS(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	c := config.Default().Cluster
	c.NodeName, c.NATSURL = "ext", s.ClientURL()
	f, err := Start(c, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Server() != nil {
		t.Fatal("an embedded server runs with nats_url")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.WaitReady(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// TestPeersFromDNS: one name resolving to every core gives one route per
// address; a name that does not resolve is kept for NATS to retry.
func TestPeersFromDNS(t *testing.T) {
	old := lookupHost
	defer func() { lookupHost = old }()
	lookupHost = func(_ context.Context, host string) ([]string, error) {
		if host == "cores.culex" {
			return []string{"10.0.0.1", "10.0.0.2", "fd00::3"}, nil
		}
		return nil, errors.New("no such host")
	}
	us, err := resolvePeers([]string{"cores.culex:4248", "later.culex:4248", "10.0.0.1:4248"}, "s")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range us {
		got = append(got, u.Host)
		if p, _ := u.User.Password(); u.User.Username() != routeUser || p != "s" {
			t.Errorf("%s: credentials %v", u, u.User)
		}
	}
	want := []string{"10.0.0.1:4248", "10.0.0.2:4248", "[fd00::3]:4248", "later.culex:4248"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("routes %v, want %v", got, want)
	}
}
