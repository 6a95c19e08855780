package brokertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tool returns the path of the program name, found on PATH or in /usr/sbin
// and /sbin (where Debian installs daemons such as mosquitto, not on every
// user's PATH). Where it is missing the test is skipped, except in CI (CI=true
// in the environment), where a test that cannot run is a failure: the
// failure names debianPkg, the package that provides name.
func Tool(t testing.TB, name, debianPkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (Debian package %s; scripts/test.sh installs it), and CI=true: every test must run", name, debianPkg)
		return ""
	}
	t.Skipf("%s not installed (Debian package %s)", name, debianPkg)
	return ""
}
