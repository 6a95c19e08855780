package clustertest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nsClusterPort is every namespaced node's cluster port: each node has an
// address of its own, in a namespace nothing else runs in, so no other
// process can hold it (a restarted node keeps it, as its peers list it).
const nsClusterPort = 4248

// startNS creates node n's namespace (the i-th node) and starts it there.
func (c *Cluster) startNS(n *Node, i int) {
	addr := c.net.addr(i)
	n.IP = addr.String()
	n.NS = c.net.hub + "-" + n.Name
	if err := c.net.addNode(n.NS, "p"+n.Name, addr); err != nil {
		c.t.Fatalf("node %s: %v", n.Name, err)
	}
	n.ClusterAddr = net.JoinHostPort(n.IP, strconv.Itoa(nsClusterPort))
	n.writeConfig()
	if err := n.launch(); err != nil {
		c.t.Fatalf("node %s: %v", n.Name, err)
	}
}

func (c *Cluster) closeNet() {
	c.mu.Lock()
	var ns []string
	for _, n := range c.Nodes {
		ns = append(ns, n.NS)
	}
	c.mu.Unlock()
	c.net.close(ns...)
}

func (c *Cluster) needNet(what string) {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatalf("clustertest: %s needs Options.Netns", what)
	}
}

// HostIP is the test process's address on the nodes' network (namespaced
// clusters; "127.0.0.1" otherwise).
func (c *Cluster) HostIP() string {
	if c.net == nil {
		return "127.0.0.1"
	}
	return c.net.host.String()
}

// Partition cuts the network between the groups of nodes: every node of
// a group drops the packets to and from the nodes of the other groups
// (iptables in its namespace). Nodes in no group keep their links. The
// test process still reaches every node, so clients stay connected.
// Heal undoes it.
func (c *Cluster) Partition(groups ...[]*Node) {
	c.t.Helper()
	c.needNet("Partition")
	for i, g := range groups {
		var others []netip.Addr
		for j, h := range groups {
			if j == i {
				continue
			}
			for _, n := range h {
				others = append(others, netip.MustParseAddr(n.IP))
			}
		}
		for _, n := range g {
			if err := c.net.drop(n.NS, others); err != nil {
				c.t.Fatalf("partition: %v", err)
			}
		}
	}
}

// Heal removes every partition.
func (c *Cluster) Heal() {
	c.t.Helper()
	c.needNet("Heal")
	c.mu.Lock()
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if err := c.net.heal(n.NS); err != nil {
			c.t.Fatalf("heal: %v", err)
		}
	}
}

// Isolate takes node n's link down: neither the other nodes nor the test
// process reach it (its clients' connections hang). Rejoin undoes it.
func (c *Cluster) Isolate(n *Node) {
	c.t.Helper()
	c.needNet("Isolate")
	if err := c.net.link(n.NS, false); err != nil {
		c.t.Fatalf("isolate: %v", err)
	}
}

// Rejoin brings node n's link back up.
func (c *Cluster) Rejoin(n *Node) {
	c.t.Helper()
	c.needNet("Rejoin")
	if err := c.net.link(n.NS, true); err != nil {
		c.t.Fatalf("rejoin: %v", err)
	}
}

// Culex runs the culex binary with args as a tool on node n's host (in
// its namespace, if any), with n's config file available as
// n.ConfigFile(), and returns its combined output.
func (n *Node) Culex(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, binPath, args...)
	if n.NS != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.NS, binPath}, args...)...)
	}
	cmd.Env = Environ()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("culex %s on %s: %w\n%s", strings.Join(args, " "), n.Name, err, out)
	}
	return string(out), nil
}

// nsAdminPort is a namespaced node's admin port (/readyz, /metrics).
const nsAdminPort = 18083

// AdminAddr is a namespaced node's admin listener (host:port), "" on
// loopback, where nodes get none unless Options.Extra sets one.
func (n *Node) AdminAddr() string {
	if n.IP == "" {
		return ""
	}
	return net.JoinHostPort(n.IP, strconv.Itoa(nsAdminPort))
}

// PID is the id of the node's current process (0 when none ran).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the node's current process has not exited.
func (n *Node) Running() bool {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// KillTogether sends SIGKILL to every node first, then waits for each
// to exit: a coordinated crash, no node outliving another by a wait.
func (c *Cluster) KillTogether(nodes ...*Node) {
	c.t.Helper()
	for _, n := range nodes {
		n.mu.Lock()
		if n.cmd != nil && n.cmd.Process != nil {
			n.cmd.Process.Signal(syscall.SIGKILL)
		}
		n.mu.Unlock()
	}
	for _, n := range nodes {
		n.Kill()
	}
}
