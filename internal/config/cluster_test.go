package config

import (
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestClusterKeys(t *testing.T) {
	c, err := Parse("serve", []string{"--cluster.listen", "127.0.0.1:4248", "--cluster.peers", "a:4248,b:4248",
		"--cluster.peers", "c:4248", "--cluster.role", "replicant"},
		[]string{"CULEX_CLUSTER_SECRET=s3", "CULEX_CLUSTER_NODE_NAME=n1", "CULEX_CLUSTER_PEERS=x:1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.Cluster.Listen, c.Cluster.Peers, c.Cluster.Role, c.Cluster.Secret, c.Cluster.Node(), c.Cluster.Enabled()}
	want := []any{"127.0.0.1:4248", []string{"a:4248", "b:4248", "c:4248"}, "replicant", "s3", "n1", true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	c, err = Parse("serve", nil, []string{"CULEX_CLUSTER_PEERS=x:1, y:2", "CULEX_CLUSTER_LISTEN=:4248", "CULEX_CLUSTER_SECRET=s"}, io.Discard)
	if err != nil || !reflect.DeepEqual(c.Cluster.Peers, []string{"x:1", "y:2"}) {
		t.Errorf("env peers: %v %v", c.Cluster.Peers, err)
	}
	if d := Default(); d.Cluster.Enabled() {
		t.Error("cluster enabled by default")
	}
}

func TestClusterErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster.listen", ":4248"}, "cluster.secret: required"},
		{[]string{"--cluster.listen", "nope", "--cluster.secret", "s"}, "cluster.listen: \"nope\" is not host:port"},
		{[]string{"--cluster.role", "leader"}, "cluster.role: \"leader\" is not core or replicant"},
		{[]string{"--cluster.peers", "a:1"}, "cluster.listen: required with cluster.peers"},
		{[]string{"--cluster.peers", "a", "--cluster.listen", ":1", "--cluster.secret", "s"}, "cluster.peers[0]: \"a\" is not host:port"},
		{[]string{"--cluster.sync", "sometimes"}, "cluster.sync: \"sometimes\" is not always"},
		{[]string{"--cluster.node-timeout", "20s"}, "cluster.node_timeout: 20s must be shorter than cluster.ack_timeout"},
		{[]string{"--cluster.tls.cert-file", "c.pem", "--cluster.tls.key-file", "k.pem"}, "cluster.tls.ca_file: required"},
		{[]string{"--cluster.listen", ":1", "--cluster.secret", "s", "--cluster.nats-url", "nats://x:4222"}, "cluster.nats_url: set together with cluster.listen"},
		{[]string{"--cluster.name", "a.b"}, "cluster.name:"},
		{[]string{"--cluster.listen", ":1", "--cluster.secret", "s", "--cluster.link-listen", "4249"}, "cluster.link_listen: \"4249\" is not host:port or off"},
		{[]string{"--cluster.nats-url", "nats://x:4222", "--cluster.link-listen", ":4249", "--cluster.secret", "s"}, "cluster.link_listen: \":4249\": with cluster.nats_url, give the address"},
		{[]string{"--cluster.nats-url", "nats://x:4222", "--cluster.link-listen", "10.0.0.5:4249"}, "cluster.link_listen: needs cluster.secret"},
		{[]string{"--cluster.listen", ":1", "--cluster.secret", "s", "--data-dir", ""}, "cluster.store_dir: a core keeps"},
	} {
		_, err := Parse("serve", tc.args, nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
	// TLS with a cluster CA is enough without a secret.
	if _, err := Parse("serve", []string{"--cluster.listen", ":1", "--cluster.tls.cert-file", "c", "--cluster.tls.key-file", "k", "--cluster.tls.ca-file", "ca"}, nil, io.Discard); err != nil {
		t.Error(err)
	}
}

// TestLinkAddress: where the link port listens, by default and as set.
func TestLinkAddress(t *testing.T) {
	for _, tc := range []struct {
		listen, natsURL, link, want string
		ok                          bool
	}{
		{listen: "0.0.0.0:4248", want: "0.0.0.0:0", ok: true},
		{listen: "10.1.2.3:4248", want: "10.1.2.3:0", ok: true},
		{listen: "0.0.0.0:4248", link: ":4249", want: ":4249", ok: true},
		{listen: "0.0.0.0:4248", link: "off"},
		{natsURL: "nats://x:4222"},
		{natsURL: "nats://x:4222", link: "10.0.0.5:4249", want: "10.0.0.5:4249", ok: true},
	} {
		c := Default().Cluster
		c.Listen, c.NATSURL, c.LinkListen, c.Secret = tc.listen, tc.natsURL, tc.link, "s"
		if got, ok := c.LinkAddress(); got != tc.want || ok != tc.ok {
			t.Errorf("%+v: %q %v, want %q %v", tc, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClusterEvenCoresWarning(t *testing.T) {
	c := Default()
	c.Cluster.Listen, c.Cluster.Secret, c.Cluster.Peers = "a:1", "s", []string{"b:1", "c:1", "d:1"}
	if w := c.Cluster.Warnings(); len(w) != 1 || !strings.Contains(w[0], "odd number") {
		t.Errorf("warnings %v", w)
	}
	c.Cluster.Peers = []string{"b:1", "c:1"}
	if w := c.Cluster.Warnings(); len(w) != 0 {
		t.Errorf("warnings %v", w)
	}
}
