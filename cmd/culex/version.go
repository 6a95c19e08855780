package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// versionLine is what `culex version` prints: the module version (or the
// one set with -ldflags -X main.version), the VCS commit, its time and
// whether the tree had local changes, and the Go version, all from the
// binary's build info.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "culex " + version
	}
	return "culex " + formatVersion(version, bi)
}

// formatVersion renders bi; given overrides the module version unless it
// is "dev".
func formatVersion(given string, bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if given != "dev" || v == "" {
		v = given
	}
	s := map[string]string{}
	for _, kv := range bi.Settings {
		s[kv.Key] = kv.Value
	}
	var parts []string
	if c := s["vcs.revision"]; c != "" {
		if len(c) > 12 {
			c = c[:12]
		}
		if s["vcs.modified"] == "true" {
			c += "+modified"
		}
		parts = append(parts, "commit "+c)
	} else {
		parts = append(parts, "commit unknown")
	}
	if t := s["vcs.time"]; t != "" {
		parts = append(parts, t)
	}
	parts = append(parts, bi.GoVersion)
	return fmt.Sprintf("%s (%s)", v, strings.Join(parts, ", "))
}
