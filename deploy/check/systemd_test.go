package check

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unitFile = "../systemd/culex.service"

// unit reads a systemd unit's [Service] settings (repeated keys joined by
// newlines).
func unit(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			if out[k] != "" {
				v = out[k] + "\n" + v
			}
			out[k] = v
		}
	}
	return out
}

// tool returns the path of a program the test needs: missing, the test
// skips, or fails where CI=true (scripts/test.sh installs it).
func tool(t *testing.T, name, debianPkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (Debian package %s; scripts/test.sh installs it), and CI=true: every test must run", name, debianPkg)
	}
	t.Skipf("%s not installed (Debian package %s)", name, debianPkg)
	return ""
}

// TestSystemdUnit: systemd itself accepts the unit (no unknown keys) with
// the release binary in place, rates its exposure low, and the unit runs
// culex serve as a non-root user on a state directory that is its
// data_dir, with time to shut down gracefully.
func TestSystemdUnit(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	u := unit(t)
	if u["User"] == "" || u["User"] == "root" {
		t.Errorf("User=%q, want a dedicated user", u["User"])
	}
	exec1 := strings.Fields(u["ExecStart"])
	if len(exec1) != 4 || exec1[1] != "serve" || exec1[2] != "-c" {
		t.Fatalf("ExecStart=%s, want culex serve -c FILE", u["ExecStart"])
	}
	env := map[string]string{}
	for _, e := range strings.Fields(u["Environment"]) {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	cfg := effectiveConfig(t, "the unit's environment", "", env)
	if dir := getString(cfg, "data_dir"); dir != "/var/lib/"+u["StateDirectory"] {
		t.Errorf("data_dir %s is not the StateDirectory /var/lib/%s (the only writable path under ProtectSystem=strict)", dir, u["StateDirectory"])
	}
	stop, _ := time.ParseDuration(u["TimeoutStopSec"])
	shutdown, _ := time.ParseDuration(getString(cfg, "shutdown_timeout"))
	if stop <= shutdown {
		t.Errorf("TimeoutStopSec=%s does not cover shutdown_timeout %v", u["TimeoutStopSec"], shutdown)
	}
	if n, _ := strconv.Atoi(u["LimitNOFILE"]); n < 65536 {
		t.Errorf("LimitNOFILE=%s: one descriptor per device needs more", u["LimitNOFILE"])
	}

	// systemd-analyze verify checks every key and that ExecStart exists:
	// point it at the release binary.
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "culex.service")
	os.WriteFile(tmp, bytes.ReplaceAll(b, []byte(exec1[0]), []byte(culexBin)), 0o644)
	out, err := exec.Command(analyze, "verify", tmp).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, _ = exec.Command(analyze, "security", "--offline=yes", tmp).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for culex.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security rates the unit's exposure %.1f, want at most 2.0 (hardening options missing):\n%s", level, out)
	}
}
