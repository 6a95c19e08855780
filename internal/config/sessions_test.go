package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClusterSessionsKeys(t *testing.T) {
	d := Default().Cluster.Sessions
	if d.MaxLogBytes != 1<<30 || d.MaxLogAge != 7*24*time.Hour {
		t.Errorf("defaults: %+v", d)
	}
	c, err := Parse("serve", []string{"--cluster.sessions.max-log-bytes", "2097152"},
		[]string{"CULEX_CLUSTER_SESSIONS_MAX_LOG_AGE=48h"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Cluster.Sessions; s.MaxLogBytes != 2<<20 || s.MaxLogAge != 48*time.Hour {
		t.Errorf("flag and variable: %+v", s)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("cluster:\n  sessions:\n    max_log_bytes: 1000\n    max_log_age: 12h\n"), 0o600)
	c, err = Parse("serve", []string{"-c", file, "--cluster.sessions.max-log-bytes", "4194304"}, nil, io.Discard)
	if err != nil || c.Cluster.Sessions.MaxLogBytes != 4<<20 || c.Cluster.Sessions.MaxLogAge != 12*time.Hour {
		t.Errorf("file then flag: %+v, %v", c.Cluster.Sessions, err)
	}
	for _, tc := range []struct {
		args, env []string
		want      string
	}{
		{[]string{"-c", file}, nil, `cluster.sessions.max_log_bytes: 1000 must be at least 1048576`},
		{nil, []string{"CULEX_CLUSTER_SESSIONS_MAX_LOG_BYTES=big"}, `cluster.sessions.max_log_bytes: "big" is not a whole number`},
		{[]string{"--cluster.sessions.max-log-age", "10s"}, nil, `cluster.sessions.max_log_age: 10s must be at least 1m`},
		{[]string{"--cluster.sessions.max-log-age", "week"}, nil, `cluster.sessions.max_log_age: "week" is not a duration`},
	} {
		_, err := Parse("serve", tc.args, tc.env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}
