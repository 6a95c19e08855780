package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// culexBin is the culex binary built once by TestMain; buildErr says why not.
var (
	culexBin string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "culex-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	culexBin, buildErr = buildCulex(dir)
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if leaked := brokerGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of culex packages still running after every server shut down:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// brokerGoroutines waits up to d for every goroutine running code of
// internal/ packages to exit (each server was shut down by its test) and
// returns the stacks of those that remain.
func brokerGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/culexmq/culex/internal/") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// buildCulex builds ./cmd/culex from the module root into dir.
func buildCulex(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "culex")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/culex")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/culex: %w\n%s", err, out)
	}
	return bin, nil
}

// listeningRE matches serve's per-listener log line in slog text form.
var listeningRE = regexp.MustCompile(`msg="?listening"?.*\burl="?([a-z]+://[^\s"]+)`)

// culexProc is a running `culex serve` process.
type culexProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string // host:port of the TCP listener
	stderr *lockedBuffer
	exited chan struct{}
	err    error // Wait's result, after exited closes
}

// startCulex runs `culex serve` on a loopback port-0 TCP listener with the
// given data dir and extra flags, and waits until it logs the listener's
// address.
func startCulex(t *testing.T, dataDir string, flags ...string) *culexProc {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("culex binary unavailable: %v", buildErr)
	}
	p := &culexProc{t: t, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	args := append([]string{"serve", "--listen", "tcp://127.0.0.1:0", "--data-dir", dataDir, "--log-level", "info"}, flags...)
	p.cmd = exec.Command(culexBin, args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start culex: %v", err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.stderr, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil && strings.HasPrefix(m[1], "tcp://") {
				select {
				case addrc <- strings.TrimPrefix(m[1], "tcp://"):
				default:
				}
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("culex stderr:\n%s", tail(p.stderr.String(), 100))
		}
	})
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		t.Fatalf("culex exited before listening: %v\n%s", p.err, p.stderr.String())
	case <-time.After(waitTimeout):
		t.Fatalf("culex did not log a tcp listener within %v:\n%s", waitTimeout, p.stderr.String())
	}
	return p
}

// stop sends sig and waits for the process to exit, killing it if it takes
// longer than the deadline.
func (p *culexProc) stop(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.t.Errorf("culex did not exit within 15s of %v; killing it", sig)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
