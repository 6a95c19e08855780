package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDrainKeys(t *testing.T) {
	c, err := Parse("serve", []string{"--cluster.drain-rate", "7"},
		[]string{"CULEX_CLUSTER_DRAIN_SERVER_REFERENCE=mqtt.example.com:1883"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.DrainRate != 7 || c.Cluster.DrainServerReference != "mqtt.example.com:1883" {
		t.Errorf("drain_rate %d, drain_server_reference %q", c.Cluster.DrainRate, c.Cluster.DrainServerReference)
	}
	if d := Default(); d.Cluster.DrainRate != defaultDrainRate || d.Cluster.DrainServerReference != "" {
		t.Errorf("defaults: %+v", d.Cluster)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("cluster:\n  drain_rate: -1\n"), 0o600)
	for _, tc := range []struct {
		args, env []string
		want      string
	}{
		{[]string{"-c", file}, nil, `cluster.drain_rate: "-1" is not a whole number >= 0`},
		{[]string{"--cluster.drain-rate", "fast"}, nil, `cluster.drain_rate: "fast" is not a whole number`},
		{nil, []string{"CULEX_CLUSTER_DRAIN_RATE=-3"}, "cluster.drain_rate"},
		{[]string{"--cluster.drain-server-reference", "nohost"}, nil, `cluster.drain_server_reference: "nohost" is not host:port`},
	} {
		_, err := Parse("serve", tc.args, tc.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}
