// Package clustertest runs real `culex serve` processes as a cluster on
// loopback for tests: it builds culex once, starts cores and replicants on
// free ports, waits until each logs that it is ready, kills nodes with
// SIGKILL and restarts them on the same cluster port and data directory.
//
//	c := clustertest.Start(t, clustertest.Options{Cores: 3, Replicants: 2})
//	a, b := c.Nodes[0], c.Nodes[3]   // a.Addr is the MQTT host:port
//	b.Kill(); b.Restart(); b.WaitReady()
//	r := c.Add(clustertest.Replicant)
//
// Every wait has a deadline (Options.Timeout); a failed test prints every
// node's log. With Options.Netns each node runs in a network namespace of
// its own instead of on loopback, so that tests can cut its links
// (Partition, Heal, Isolate, Rejoin: netns.go).
package clustertest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Roles.
const (
	Core      = "core"
	Replicant = "replicant"
)

// Options shape a cluster.
type Options struct {
	Cores, Replicants int
	// Extra is YAML appended to every node's config (top-level keys, and
	// keys under "cluster:" written as "cluster.key: value" lines are not
	// supported: use ClusterExtra).
	Extra string
	// ClusterExtra is YAML lines put under each node's cluster: section,
	// indented by the harness (e.g. "node_timeout: 2s").
	ClusterExtra string
	// Timeout bounds every wait (default 60 s).
	Timeout time.Duration
	// Env is added to each process's environment.
	Env []string
	// Netns runs each node in a network namespace of its own (Linux, as
	// root; see NetnsSupported), reached from the test process over veth
	// links: Node.IP is its address, and Partition, Heal, Isolate and
	// Rejoin cut and restore its links.
	Netns bool
	// DataDir, when set, is called once per node (Name and Role set)
	// with the directory the harness chose for it, created, and returns
	// the one the node uses as data_dir (e.g. a mount of a filesystem the
	// test controls).
	DataDir func(t testing.TB, n *Node, dir string) string
}

// Cluster is a running set of nodes.
type Cluster struct {
	t      testing.TB
	opts   Options
	dir    string
	secret string
	mu     sync.Mutex
	Nodes  []*Node
	seeds  []string // the cores' cluster addresses
	net    *netnet  // with Options.Netns
}

// Node is one `culex serve` process (or a stopped one, between Kill and
// Restart).
type Node struct {
	c           *Cluster
	Name, Role  string
	ClusterAddr string // host:port of its cluster port
	DataDir     string
	// IP is the node's address in its namespace (Options.Netns), NS the
	// namespace's name; both empty on loopback.
	IP, NS  string
	cfgFile string

	mu     sync.Mutex
	Addr   string // MQTT host:port of the current process
	cmd    *exec.Cmd
	log    *logBuf
	ready  chan struct{}
	listen chan string
	exited chan struct{}
	runs   int
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/culex once per test process and returns its path;
// with CULEX_CLUSTERTEST_RACE=1 it is built with the race detector.
func Binary(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "culex-clustertest-")
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binPath = filepath.Join(dir, "culex")
		args := []string{"build", "-o", binPath}
		if os.Getenv("CULEX_CLUSTERTEST_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/culex")...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/culex: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("culex binary: %v", buildErr)
	}
	return binPath
}

// Start starts opts.Cores cores, then opts.Replicants replicants, and
// waits until every node is ready.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	Binary(t)
	c := &Cluster{t: t, opts: opts, dir: t.TempDir(), secret: "test-secret-" + strconv.Itoa(os.Getpid())}
	var ports []int
	if opts.Netns {
		nn, err := newNetnet()
		if err != nil {
			t.Fatalf("clustertest: %v", err)
		}
		c.net = nn
		t.Cleanup(c.closeNet) // after stopAll (cleanups run last first)
		for i := range opts.Cores {
			ports = append(ports, nsClusterPort)
			c.seeds = append(c.seeds, net.JoinHostPort(nn.addr(i).String(), strconv.Itoa(nsClusterPort)))
		}
	} else {
		ports = FreePorts(t, opts.Cores)
		for _, p := range ports {
			c.seeds = append(c.seeds, "127.0.0.1:"+strconv.Itoa(p))
		}
	}
	t.Cleanup(c.stopAll)
	for i := range opts.Cores {
		c.start(Core, ports[i])
	}
	for range opts.Replicants {
		c.start(Replicant, 0)
	}
	for _, n := range c.Nodes {
		n.WaitReady()
	}
	return c
}

// Add starts one more node of role while the others run and waits until
// it is ready.
func (c *Cluster) Add(role string) *Node {
	c.t.Helper()
	n := c.start(role, 0)
	n.WaitReady()
	return n
}

// Secret is the cluster secret the nodes share.
func (c *Cluster) Secret() string { return c.secret }

// Seeds are the cores' cluster addresses.
func (c *Cluster) Seeds() []string { return c.seeds }

func (c *Cluster) start(role string, port int) *Node {
	c.mu.Lock()
	i := len(c.Nodes)
	n := &Node{c: c, Name: fmt.Sprintf("%s%d", role[:1], i), Role: role}
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	n.DataDir = filepath.Join(c.dir, n.Name)
	if c.opts.DataDir != nil {
		if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
			c.t.Fatal(err)
		}
		n.DataDir = c.opts.DataDir(c.t, n, n.DataDir)
	}
	if c.net != nil {
		c.startNS(n, i)
		return n
	}
	for attempt := 0; ; attempt++ {
		if port == 0 {
			port = FreePorts(c.t, 1)[0]
		}
		n.ClusterAddr = "127.0.0.1:" + strconv.Itoa(port)
		n.writeConfig()
		err := n.launch()
		if err == nil {
			return n
		}
		if !strings.Contains(err.Error(), "address already in use") || attempt >= 3 {
			c.t.Fatalf("node %s: %v", n.Name, err)
		}
		port = 0 // taken meanwhile: another free port (gossip completes the mesh)
	}
}

func (n *Node) writeConfig() {
	c := n.c
	var peers []string
	for _, s := range c.seeds {
		if s != n.ClusterAddr {
			peers = append(peers, strconv.Quote(s))
		}
	}
	var extra strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(c.opts.ClusterExtra), "\n") {
		if l != "" {
			extra.WriteString("  " + l + "\n")
		}
	}
	host := cmp.Or(n.IP, "127.0.0.1")
	cfg := fmt.Sprintf(`log_level: info
data_dir: %q
listeners: [tcp://%s]
sys_interval: 0s
cluster:
  name: culex-test
  node_name: %s
  role: %s
  listen: %q
  peers: [%s]
  secret: %q
  node_timeout: 2s
  ack_timeout: 10s
%s`, n.DataDir, net.JoinHostPort(host, "0"), n.Name, n.Role, n.ClusterAddr, strings.Join(peers, ", "), c.secret, extra.String()) + c.opts.Extra
	if n.IP != "" { // a namespace of its own: the admin port cannot collide
		cfg += fmt.Sprintf("admin:\n  listen: %q\n", n.AdminAddr())
	}
	n.cfgFile = filepath.Join(c.dir, n.Name+".yaml")
	if err := os.WriteFile(n.cfgFile, []byte(cfg), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// ConfigFile is the node's config file (for `culex cluster status -c`).
func (n *Node) ConfigFile() string { return n.cfgFile }

var (
	listeningRE = regexp.MustCompile(`msg="?listening"?.*\burl="?tcp://([^\s"]+)`)
	readyRE     = regexp.MustCompile(`msg="cluster ready"`)
)

// launch starts the process and waits until it listens for MQTT.
func (n *Node) launch() error {
	n.mu.Lock()
	n.runs++
	n.log = &logBuf{}
	n.ready, n.listen, n.exited = make(chan struct{}), make(chan string, 1), make(chan struct{})
	n.cmd = exec.Command(binPath, "serve", "-c", n.cfgFile)
	if n.NS != "" { // ip execs culex in the namespace: the process is culex
		n.cmd = exec.Command("ip", "netns", "exec", n.NS, binPath, "serve", "-c", n.cfgFile)
	}
	n.cmd.Env = append(Environ(), n.c.opts.Env...)
	cmd, log, ready, listen, exited := n.cmd, n.log, n.ready, n.listen, n.exited
	n.mu.Unlock()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = log
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		readyOnce := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			log.add(line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case listen <- m[1]:
				default:
				}
			}
			if readyRE.MatchString(line) {
				readyOnce.Do(func() { close(ready) })
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case a := <-listen:
		n.mu.Lock()
		n.Addr = a
		n.mu.Unlock()
		return nil
	case <-exited:
		return fmt.Errorf("exited before listening:\n%s", log)
	case <-time.After(n.c.opts.Timeout):
		n.kill()
		return fmt.Errorf("did not listen within %s:\n%s", n.c.opts.Timeout, log)
	}
}

// Environ is the test's environment without CULEX_ variables: serve
// refuses unknown ones, and the nodes' config is the harness's.
func Environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CULEX_") {
			out = append(out, kv)
		}
	}
	return out
}

// MQTT is the node's current MQTT address (host:port).
func (n *Node) MQTT() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Addr
}

// WaitReady waits until the node logs "cluster ready": it has joined and
// knows every other node's subscriptions.
func (n *Node) WaitReady() {
	n.c.t.Helper()
	n.mu.Lock()
	ready, exited := n.ready, n.exited
	n.mu.Unlock()
	select {
	case <-ready:
	case <-exited:
		n.c.t.Fatalf("node %s exited before it was ready:\n%s", n.Name, n.Log())
	case <-time.After(n.c.opts.Timeout):
		n.c.t.Fatalf("node %s not ready within %s:\n%s", n.Name, n.c.opts.Timeout, n.Log())
	}
}

// Kill ends the process with SIGKILL and waits for it to exit.
func (n *Node) Kill() {
	n.c.t.Helper()
	if err := n.kill(); err != nil {
		n.c.t.Fatalf("kill %s: %v", n.Name, err)
	}
}

func (n *Node) kill() error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(n.c.opts.Timeout):
		return errors.New("did not exit after SIGKILL")
	}
}

// Stop ends the process with SIGTERM (a graceful shutdown) and waits.
func (n *Node) Stop() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(n.c.opts.Timeout):
		n.kill()
	}
}

// Restart starts the node again with the same name, cluster port and data
// directory; it returns once the node listens (WaitReady waits for more).
func (n *Node) Restart() {
	n.c.t.Helper()
	if err := n.launch(); err != nil {
		n.c.t.Fatalf("restart %s: %v", n.Name, err)
	}
}

// Log is what the node's current process logged.
func (n *Node) Log() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// WaitLog waits until the node's log has a line matching re.
func (n *Node) WaitLog(re *regexp.Regexp) {
	n.c.t.Helper()
	deadline := time.Now().Add(n.c.opts.Timeout)
	for !re.MatchString(n.Log()) {
		if time.Now().After(deadline) {
			n.c.t.Fatalf("node %s: no log line matching %s within %s:\n%s", n.Name, re, n.c.opts.Timeout, n.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

func (c *Cluster) stopAll() {
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		n.kill()
		if strings.Contains(n.Log(), "WARNING: DATA RACE") {
			c.t.Errorf("node %s: the race detector reported a data race", n.Name)
		}
	}
	if c.t.Failed() {
		for _, n := range nodes {
			c.t.Logf("node %s (%s) log:\n%s", n.Name, n.Role, n.Log())
		}
	}
}

// FreePorts returns n loopback TCP ports that were free a moment ago.
func FreePorts(t testing.TB, n int) []int {
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) add(line string) {
	l.mu.Lock()
	l.b.WriteString(line)
	l.b.WriteByte('\n')
	l.mu.Unlock()
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Signal sends sig to the node's process (Freeze stops it, Thaw
// resumes it). Freeze returns once every thread of the process is
// stopped: kill(2) only queues the signal, and on a loaded machine the
// node's running threads go on routing and acknowledging until the
// thread picked to take the stop gets a CPU.
func (n *Node) Signal(sig os.Signal) {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		n.c.t.Fatalf("signal %s: %v", n.Name, err)
	}
	if sig == Freeze && Freeze != os.Kill {
		if err := waitStopped(cmd.Process.Pid, 10*time.Second); err != nil {
			n.c.t.Fatalf("freeze %s: %v", n.Name, err)
		}
	}
}

// waitStopped polls /proc until every thread of pid is stopped (state T).
// Without /proc (not Linux) it cannot tell, and returns at once.
func waitStopped(pid int, within time.Duration) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	if _, err := os.Stat("/proc/self/task"); err != nil {
		return nil
	}
	deadline := time.Now().Add(within)
	for {
		running, err := runningThreads(dir)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d threads still running after %v", running, within)
		}
		time.Sleep(time.Millisecond) // a poll of /proc, bounded by the deadline
	}
}

// runningThreads counts the threads under dir (/proc/PID/task) that are
// not stopped.
func runningThreads(dir string) (int, error) {
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	running := 0
	for _, t := range tasks {
		stat, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		// "tid (comm) S ...": the state follows the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return 0, fmt.Errorf("%s/stat: unexpected %q", t.Name(), stat)
		}
		if s := stat[i+2]; s != 'T' && s != 't' {
			running++
		}
	}
	return running, nil
}
