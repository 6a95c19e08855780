package kafka

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// culexBuild is the cmd/culex binary, built once for the tests that run
// real `culex serve` processes; TestMain removes dir.
var culexBuild struct {
	once     sync.Once
	dir, bin string
	err      error
}

// culexBinary builds ./cmd/culex on first use and returns its path.
func culexBinary(t *testing.T) string {
	t.Helper()
	b := &culexBuild
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "culex-kafka-test-"); b.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil {
			b.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		b.bin = filepath.Join(b.dir, "culex")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/culex")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/culex: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

// removeCulexBinary deletes what culexBinary built.
func removeCulexBinary() {
	if culexBuild.dir != "" {
		os.RemoveAll(culexBuild.dir)
	}
}

// listeningRE matches serve's per-listener log line.
var listeningRE = regexp.MustCompile(`msg="?listening"?.*\burl="?([a-z]+)://([^\s"]+)`)

// culexProc is a running `culex serve`.
type culexProc struct {
	cmd    *exec.Cmd
	addr   string // host:port of its first listener
	exited chan struct{}
	log    *lockedLog
}

// lockedLog is a process's stderr, written by one goroutine and read by
// the test.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startCulex runs `culex serve -c cfgFile` plus args and returns once it
// logs its first listener. The process is killed at cleanup, its log
// shown if the test failed.
func startCulex(t *testing.T, cfgFile string, args ...string) *culexProc {
	t.Helper()
	p := &culexProc{exited: make(chan struct{}), log: &lockedLog{}}
	p.cmd = exec.Command(culexBinary(t), append([]string{"serve", "-c", cfgFile}, args...)...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.log.add(sc.Text())
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[2]:
				default:
				}
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("culex serve log:\n%s", p.log)
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.exited:
		t.Fatalf("culex serve exited before listening:\n%s", p.log)
	case <-time.After(waitTimeout):
		t.Fatalf("culex serve did not listen within %s:\n%s", waitTimeout, p.log)
	}
	return p
}

// kill sends SIGKILL and waits until the process is gone.
func (p *culexProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}
