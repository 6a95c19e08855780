package check

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// podmanRun are the flags every podman container gets: runc with explicit
// limits, because crun can neither raise rlimits nor use the hybrid
// cgroups of some sandboxes (this machine's among them); runc with these
// limits runs everywhere.
var podmanRun = []string{"--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"}

// registryUnreachable matches podman's errors when it cannot reach an image
// registry at all (as opposed to a Dockerfile or build error).
var registryUnreachable = regexp.MustCompile(`(?s)(Trying to pull|initializing source docker://|pinging container registry).*(no such host|dial tcp|i/o timeout|TLS handshake timeout|connection refused|network is unreachable|server misbehaving)`)

// podman runs podman with args and returns its standard output, and its
// standard error too when it fails (podman logs harmless errors there, such
// as the systemd timers of health checks on a machine without systemd).
func podman(t *testing.T, bin string, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr strings.Builder
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// TestContainerImage builds the shipped Dockerfile with podman and runs the
// image: it must report the injected version, run as the non-root user,
// keep its data in the volume, and accept an MQTT client. Where no image
// registry is reachable (this machine has none), the base images cannot
// be pulled: the test says so and builds the same Dockerfile with local
// stand-ins for them (a busybox shell with this machine's Go toolchain and
// module cache for GO_IMAGE, scratch for RUNTIME_IMAGE); every other build
// failure fails the test.
func TestContainerImage(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	bin := tool(t, "podman", "podman")
	tool(t, "runc", "runc")
	df, err := filepath.Abs(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	const tag = "localhost/culex-check:test"
	// --no-cache: buildah's layer cache ignores COPY --chown, and a stale
	// layer would hide a change of the Dockerfile.
	build := append([]string{"build", "--no-cache", "--format", "docker", "--network", "host", "-f", df, "-t", tag,
		"--build-arg", "VERSION=" + releaseVersion, "--build-arg", "COMMIT=test"}, podmanRun...)
	out, err := podman(t, bin, 15*time.Minute, append(build, repoRoot)...)
	switch {
	case err == nil:
		t.Log("built the image from its real base images")
	case registryUnreachable.MatchString(out):
		t.Logf("NO REGISTRY REACHABLE: podman cannot pull the Dockerfile's base images, so the image is NOT built from them:\n%s\n"+
			"Building the same Dockerfile with local stand-ins for the base images instead.", lastLines(out, 3))
		out, err = podman(t, bin, 10*time.Minute, append(append(build, localBases(t, bin)...), repoRoot)...)
		if err != nil {
			t.Fatalf("podman build with local base images: %v\n%s", err, out)
		}
	default:
		t.Fatalf("podman build: %v\n%s", err, out)
	}

	out, err = podman(t, bin, time.Minute, "image", "inspect", tag)
	if err != nil {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	var inspected []struct {
		Config struct {
			User         string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
		}
		Healthcheck *struct{ Test []string }
	}
	if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect: %v\n%s", err, out)
	}
	cfg, health := inspected[0].Config, inspected[0].Healthcheck
	_, volume := cfg.Volumes["/var/lib/culex"]
	if cfg.User != "65532:65532" || len(cfg.ExposedPorts) != 5 || !volume ||
		health == nil || !strings.Contains(strings.Join(health.Test, " "), "/readyz") {
		t.Errorf("built image: user %q, ports %v, volumes %v, health check %+v", cfg.User, cfg.ExposedPorts, cfg.Volumes, health)
	}

	out, err = podman(t, bin, time.Minute, append(append([]string{"run", "--rm"}, podmanRun...), tag, "version")...)
	if want := "culex " + releaseVersion + "+test"; err != nil || !strings.HasPrefix(out, want) {
		t.Errorf("podman run %s version: %q, %v; want %q", tag, out, err, want)
	}

	// Host network, every port chosen by the kernel: the node logs its
	// MQTT listener's address.
	adminPort := freePort(t)
	run := append(append([]string{"run", "-d", "--network", "host"}, podmanRun...),
		"-e", "CULEX_LISTEN=tcp://127.0.0.1:0", "-e", fmt.Sprintf("CULEX_ADMIN_LISTEN=127.0.0.1:%d", adminPort), tag)
	out, err = podman(t, bin, time.Minute, run...)
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	id := strings.TrimSpace(lastLines(out, 1))
	t.Cleanup(func() { podman(t, bin, time.Minute, "rm", "-f", id) })
	var addr, logs string
	listening := regexp.MustCompile(`msg=listening url=tcp://(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" || !strings.Contains(logs, "culex started") {
		if time.Now().After(deadline) {
			t.Fatalf("the container logged no MQTT listener and start within 30 s:\n%s", logs)
		}
		b, _ := exec.Command(bin, "logs", id).CombinedOutput() // the node logs to stderr
		logs = string(b)
		if m := listening.FindStringSubmatch(logs); m != nil {
			addr = m[1]
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	if !strings.Contains(logs, "data_dir=/var/lib/culex") {
		t.Errorf("the node does not keep its data in the volume:\n%s", logs)
	}
	if out, _ := podman(t, bin, time.Minute, "top", id, "user"); !strings.Contains(out, "65532") {
		t.Errorf("the node does not run as user 65532:\n%s", out)
	}
	mqttConnect(t, addr)
	// Every listener is bound before "culex started": an admin listener
	// answers now, or this culex has none yet.
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", adminPort), 5*time.Second); err == nil {
		c.Close()
		out, err := podman(t, bin, time.Minute, "exec", id, "/usr/local/bin/culex", "probe", fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err != nil {
			t.Errorf("culex probe /readyz inside the container: %v\n%s", err, out)
		}
	} else {
		t.Logf("this culex serves no admin listener yet: /readyz not probed in the container")
		return
	}

	// The image's own HEALTHCHECK, as shipped, in a container of its own
	// network namespace (so the fixed 18083 of the image is private to it).
	out, err = podman(t, bin, time.Minute, append(append([]string{"run", "-d"}, podmanRun...), tag)...)
	if err != nil {
		t.Fatalf("podman run on its own network: %v\n%s", err, out)
	}
	own := strings.TrimSpace(lastLines(out, 1))
	t.Cleanup(func() { podman(t, bin, time.Minute, "rm", "-f", own) })
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, err := podman(t, bin, time.Minute, "healthcheck", "run", own)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := exec.Command(bin, "logs", own).CombinedOutput()
			t.Fatalf("the image's HEALTHCHECK still fails after 30 s: %v\n%s\nnode log:\n%s", err, out, b)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

// localBases builds the stand-in base images and returns the podman build
// flags that use them: GO_IMAGE is busybox's shell with this machine's Go
// toolchain, module cache and build cache mounted (no network needed),
// RUNTIME_IMAGE is scratch (the binary is static; the user is numeric).
func localBases(t *testing.T, bin string) []string {
	t.Helper()
	busybox := tool(t, "busybox", "busybox-static")
	if f, err := elf.Open(busybox); err != nil || slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		t.Fatalf("%s is not a static binary: the stand-in image has no libc (install busybox-static)", busybox)
	}
	goroot, modcache, gocache := goEnv(t, "GOROOT"), goEnv(t, "GOMODCACHE"), goEnv(t, "GOCACHE")
	// The build's `go mod download` runs offline (GOPROXY=off) on the
	// mounted cache: fill it with every module of go.mod first.
	dl := exec.Command("go", "mod", "download")
	dl.Dir = repoRoot
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755)
	for _, applet := range []string{"sh", "mkdir"} {
		os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	tar := filepath.Join(dir, "go.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	const goImage = "localhost/culex-check-go:stand-in"
	if out, err := podman(t, bin, 2*time.Minute, "import", "-q",
		"--change", "ENV PATH=/usr/local/go/bin:/bin", "--change", "ENV GOPATH=/go", "--change", "ENV HOME=/root",
		"--change", "ENV GOPROXY=off", "--change", "ENV GOTOOLCHAIN=local", tar, goImage); err != nil {
		t.Fatalf("podman import: %v\n%s", err, out)
	}
	return []string{"--build-arg", "GO_IMAGE=" + goImage, "--build-arg", "RUNTIME_IMAGE=scratch",
		"-v", goroot + ":/usr/local/go:ro", "-v", modcache + ":/go/pkg/mod", "-v", gocache + ":/root/.cache/go-build"}
}

func goEnv(t *testing.T, key string) string {
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// mqttConnect sends an MQTT 3.1.1 CONNECT and a PINGREQ to addr and
// expects CONNACK "accepted" and PINGRESP.
func mqttConnect(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial the container's MQTT listener: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	id := "image-check"
	connect := append([]byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, byte(len(id))}, id...)
	if _, err := c.Write(append(connect, 0xc0, 0)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	got := make([]byte, 6)
	for i := range got {
		if got[i], err = r.ReadByte(); err != nil {
			t.Fatalf("reading CONNACK and PINGRESP: %v (got % x)", err, got[:i])
		}
	}
	if want := []byte{0x20, 2, 0, 0, 0xd0, 0}; string(got) != string(want) {
		t.Errorf("the container answered % x, want CONNACK accepted and PINGRESP % x", got, want)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
