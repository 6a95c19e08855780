package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A namespaced cluster (Options.Netns) puts each node in a network
// namespace of its own, "cxf-<pid>-<k>-<node>", whose eth0 is a veth to a
// bridge in the run's hub namespace "cxf-<pid>-<k>". The test process, in
// the root namespace, reaches the nodes over one more veth pair,
// "cxf<pid>x<k>", whose root end has the subnet's first address. The
// subnet is a free /24 of 169.254.0.0/16 (link-local: never routed off
// the machine), chosen under a lock so that concurrent runs differ.
//
// Partitions are iptables rules in each node's namespace, in a chain of
// its own (CXF) jumped to from INPUT and OUTPUT, that drop the traffic to
// and from the addresses of the nodes on the other side; the test
// process's address is never dropped, so clients stay connected. Isolate
// takes a node's link down instead: nothing reaches it.
type netnet struct {
	hub    string // hub namespace
	prefix netip.Prefix
	host   netip.Addr // the root end's address
	rootIf string
}

const nsPrefix = "cxf-"

var (
	nsSeq        int
	nsMu         sync.Mutex
	staleCleaned sync.Once
)

// ip runs ip(8) with args; errors carry its output.
func ip(args ...string) error { return run("ip", args...) }

func run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NetnsSupported says why namespaced clusters cannot run here (nil: they
// can): they need root, ip(8) and iptables(8).
func NetnsSupported() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt install iproute2 iptables)", tool)
		}
	}
	return nil
}

// cleanStale removes what an earlier run that was killed left: the
// namespaces named for a process that no longer exists, after killing
// the culex processes still in them (by their ids, as ip netns pids lists
// them). Deleting a hub namespace removes its veths, the root end
// included.
func cleanStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			continue // its run is still going
		}
		killNamespace(name)
		ip("netns", "delete", name)
	}
}

// killNamespace SIGKILLs the processes in namespace name.
func killNamespace(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// newNetnet creates the hub namespace, its bridge and the link to the
// root namespace.
func newNetnet() (*netnet, error) {
	if err := NetnsSupported(); err != nil {
		return nil, err
	}
	staleCleaned.Do(cleanStale)
	nsMu.Lock()
	nsSeq++
	k := nsSeq
	nsMu.Unlock()
	unlock, err := lockFile("/run/culex-clustertest-netns.lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	prefix, err := freeSubnet()
	if err != nil {
		return nil, err
	}
	nn := &netnet{
		hub:    fmt.Sprintf("%s%d-%d", nsPrefix, os.Getpid(), k),
		prefix: prefix,
		host:   prefix.Addr().Next(),
		rootIf: fmt.Sprintf("cxf%dx%d", os.Getpid(), k),
	}
	if len(nn.rootIf) > 15 {
		nn.rootIf = nn.rootIf[len(nn.rootIf)-15:]
	}
	steps := [][]string{
		{"netns", "add", nn.hub},
		{"-n", nn.hub, "link", "set", "lo", "up"},
		{"-n", nn.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nn.hub, "link", "set", "br0", "up"},
		{"link", "add", nn.rootIf, "type", "veth", "peer", "name", "up0", "netns", nn.hub},
		{"-n", nn.hub, "link", "set", "up0", "master", "br0"},
		{"-n", nn.hub, "link", "set", "up0", "up"},
		{"addr", "add", nn.host.String() + "/24", "dev", nn.rootIf},
		{"link", "set", nn.rootIf, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			nn.close()
			return nil, err
		}
	}
	return nn, nil
}

// freeSubnet picks a /24 of 169.254.0.0/16 that no address of the root
// namespace is in (the lock is held).
func freeSubnet() (netip.Prefix, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").Output()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip addr show: %w", err)
	}
	used := map[byte]bool{0: true, 169: true, 254: true, 255: true}
	for _, f := range strings.Fields(string(out)) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() {
			a := p.Addr().As4()
			if a[0] == 169 && a[1] == 254 {
				used[a[2]] = true
			}
		}
	}
	start := byte(os.Getpid()%200 + 20)
	for i := range 256 {
		x := start + byte(i)
		if !used[x] {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254, x, 0}), 24), nil
		}
	}
	return netip.Prefix{}, errors.New("no free /24 in 169.254.0.0/16")
}

// lockFile takes an exclusive flock on path.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// addr is the i-th node's address (.10 on).
func (nn *netnet) addr(i int) netip.Addr {
	a := nn.prefix.Addr().As4()
	a[3] = byte(10 + i)
	return netip.AddrFrom4(a)
}

// addNode creates namespace ns with eth0 at addr on the hub's bridge, and
// the empty partition chain.
func (nn *netnet) addNode(ns, veth string, addr netip.Addr) error {
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", nn.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", nn.hub, "link", "set", veth, "master", "br0"},
		{"-n", nn.hub, "link", "set", veth, "up"},
		{"-n", ns, "addr", "add", addr.String() + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	for _, r := range [][]string{{"-N", "CXF"}, {"-A", "INPUT", "-j", "CXF"}, {"-A", "OUTPUT", "-j", "CXF"}} {
		if err := run("ip", append([]string{"netns", "exec", ns, "iptables"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// drop makes namespace ns drop its traffic to and from addrs (added to
// what it drops already).
func (nn *netnet) drop(ns string, addrs []netip.Addr) error {
	for _, a := range addrs {
		for _, dir := range []string{"-s", "-d"} {
			if err := run("ip", "netns", "exec", ns, "iptables", "-A", "CXF", dir, a.String(), "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// heal removes every drop of namespace ns.
func (nn *netnet) heal(ns string) error {
	return run("ip", "netns", "exec", ns, "iptables", "-F", "CXF")
}

// link sets namespace ns's eth0 up or down.
func (nn *netnet) link(ns string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ip("-n", ns, "link", "set", "eth0", state)
}

// close deletes every namespace of the run (the nodes' first, after
// killing what still runs in them), and with them every veth.
func (nn *netnet) close(nodes ...string) {
	for _, ns := range nodes {
		killNamespace(ns)
		ip("netns", "delete", ns)
	}
	ip("netns", "delete", nn.hub)
	ip("link", "delete", nn.rootIf) // gone with the hub; in case it was not
}
