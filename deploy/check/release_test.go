package check

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelease: scripts/release.sh (run by TestMain) built a static ELF for
// x86-64 and one for ARM64, SHA256SUMS lists both with their right sums,
// and the binary of this machine runs and reports the injected version.
func TestRelease(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	sums, err := os.ReadFile(filepath.Join(releaseDir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, _ := strings.Cut(line, "  ")
		listed[name] = sum
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		name := "culex-" + releaseVersion + "-linux-" + arch
		path := filepath.Join(releaseDir, name)
		f, err := elf.Open(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if f.Machine != machine || f.Class != elf.ELFCLASS64 {
			t.Errorf("%s: ELF machine %v class %v, want %v 64-bit", name, f.Machine, f.Class, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (%v): want a static binary", name, p.Type)
			}
		}
		f.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if listed[name] != hex.EncodeToString(h[:]) {
			t.Errorf("SHA256SUMS lists %q for %s, its sum is %x", listed[name], name, h)
		}
	}
	out, err := exec.Command(culexBin, "version").CombinedOutput()
	// "culex v0.0.0-check+test (commit ..., go1.x)": the version and commit
	// release.sh injects, then what the build info knows.
	if err != nil || !strings.HasPrefix(string(out), "culex "+releaseVersion+"+test") {
		t.Errorf("culex version: %q, %v; want the injected culex %s+test", out, err, releaseVersion)
	}
}
