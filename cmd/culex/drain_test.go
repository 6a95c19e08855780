package main

import (
	"io"
	"strings"
	"testing"
)

// TestClusterDrainArgs: bad invocations of `culex cluster drain` are
// refused with a message saying what is wrong, before any cluster is
// joined.
func TestClusterDrainArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "the node's name comes first"},
		{[]string{"--undo", "c1"}, "the node's name comes first"},
		{[]string{"c1", "--to"}, "--to needs HOST:PORT"},
		{[]string{"c1", "--data-dir", t.TempDir()}, "the config has no cluster"},
	} {
		err := clusterDrain(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("culex cluster drain %q: got %v, want %q", tc.args, err, tc.want)
		}
	}
}
