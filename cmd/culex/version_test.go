package main

import (
	"runtime/debug"
	"testing"
)

// TestFormatVersion: the module version, a short commit marked when the
// tree was modified, the commit time and the Go version; -X main.version
// wins over the module version.
func TestFormatVersion(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-12-06T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	for _, c := range []struct{ given, want string }{
		{"dev", "v0.4.0 (commit 0123456789ab+modified, 2026-12-06T10:00:00Z, go1.26.8)"},
		{"v1.0.0", "v1.0.0 (commit 0123456789ab+modified, 2026-12-06T10:00:00Z, go1.26.8)"},
	} {
		if got := formatVersion(c.given, bi); got != c.want {
			t.Errorf("formatVersion(%q) = %q, want %q", c.given, got, c.want)
		}
	}
	bare := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	if got, want := formatVersion("dev", bare), "(devel) (commit unknown, go1.26.8)"; got != want {
		t.Errorf("without VCS stamp: %q, want %q", got, want)
	}
}
