package fabric

import (
	"strconv"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/testcert"
)

// nodeCert writes a node certificate signed by ca, usable on both ends of
// a route (server and client auth), and returns its cert and key files.
func nodeCert(t *testing.T, ca *testcert.CA, dir, name string) (string, string) {
	return testcert.WriteFiles(t, dir, name, ca.Node(t, name))
}

func tlsCfg(t *testing.T, ca *testcert.CA, dir, name string, port int, peers []int) config.Cluster {
	c := config.Default().Cluster
	c.NodeName, c.Role = name, "replicant"
	c.Listen = "127.0.0.1:" + strconv.Itoa(port)
	for _, p := range peers {
		c.Peers = append(c.Peers, "127.0.0.1:"+strconv.Itoa(p))
	}
	c.TLS.CertFile, c.TLS.KeyFile = nodeCert(t, ca, dir, name)
	c.TLS.CAFile = ca.WriteFile(t, dir, name+"-ca.pem")
	return c
}

// TestRouteTLS: nodes with certificates from the cluster CA route to each
// other without a secret; a node whose certificate another CA signed is
// refused.
func TestRouteTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := testcert.NewCA(t, "cluster"), testcert.NewCA(t, "other")
	ports := freePorts(t, 3)
	a, err := Start(tlsCfg(t, ca, dir, "a", ports[0], nil), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The intruder trusts the cluster CA but has a certificate of another.
	ic := tlsCfg(t, other, dir, "intruder", ports[1], ports[:1])
	ic.TLS.CAFile = ca.WriteFile(t, dir, "intruder-trusts.pem")
	in, err := Start(ic, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	b, err := Start(tlsCfg(t, ca, dir, "b", ports[2], ports[:1]), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	deadline := time.Now().Add(20 * time.Second)
	for b.Routes() == 0 || a.Routes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the node with a cluster certificate did not join over TLS")
		}
		time.Sleep(20 * time.Millisecond) // polling the route count
	}
	if n := in.Routes(); n != 0 {
		t.Errorf("the node with another CA's certificate has %d routes", n)
	}
	if n := a.Routes(); n != 1 {
		t.Errorf("a has %d routes, want 1 (b only)", n)
	}
}
