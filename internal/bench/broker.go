package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/PID/stat; it is
// 100 on every Linux architecture Go supports.
const clkTck = 100

// broker is one broker process started by the harness.
type broker struct {
	name   string
	port   int
	cmd    *exec.Cmd
	dir    string
	exited chan struct{}
	log    *os.File
}

// brokerSpec says how to start a broker on a port with a scratch directory.
type brokerSpec struct {
	name      string
	mosquitto string   // mosquitto binary, or "" for a command template
	template  []string // {port}, {dir} and {self} are replaced
	extraConf string   // extra mosquitto.conf lines
}

func (s brokerSpec) start(ctx context.Context) (*broker, error) {
	dir, err := os.MkdirTemp("", "culex-compare-")
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freeLoopbackPort()
		if err != nil {
			return nil, err
		}
		b, err := s.launch(ctx, dir, port)
		if err == nil {
			return b, nil
		}
		if attempt == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	return nil, fmt.Errorf("unreachable")
}

func (s brokerSpec) launch(ctx context.Context, dir string, port int) (*broker, error) {
	var argv []string
	if s.mosquitto != "" {
		conf := filepath.Join(dir, "mosquitto.conf")
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"+
			"max_queued_messages 100000\nmax_connections -1\npersistence false\n%s", port, s.extraConf)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			return nil, err
		}
		argv = []string{s.mosquitto, "-c", conf}
	} else {
		self, _ := os.Executable()
		r := strings.NewReplacer("{port}", strconv.Itoa(port), "{dir}", dir, "{self}", self)
		for _, a := range s.template {
			argv = append(argv, r.Replace(a))
		}
	}
	logf, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	detach(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	b := &broker{name: s.name, port: port, cmd: cmd, dir: dir, exited: make(chan struct{}), log: logf}
	go func() { cmd.Wait(); close(b.exited) }()
	if !waitAccept(ctx, port, b.exited, 15*time.Second) {
		b.stop()
		return nil, fmt.Errorf("%s did not listen on port %d: %s (%s)", s.name, port, strings.Join(argv, " "), logTails(b))
	}
	return b, nil
}

// stop sends SIGTERM to the broker's PID, then SIGKILL after 5s.
func (b *broker) stop() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
	}
	b.log.Close()
}

func (b *broker) cleanup() { os.RemoveAll(b.dir) }

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitAccept polls until the port accepts, the process exits or d passes.
func waitAccept(ctx context.Context, port int, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// procCPU returns utime+stime of pid in clock ticks (/proc/PID/stat fields
// 14 and 15, counted after the parenthesised command name).
func procCPU(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return ut + st, nil
}

// procRSS returns VmRSS of pid in KiB from /proc/PID/status.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
