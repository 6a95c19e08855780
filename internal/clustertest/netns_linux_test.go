package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func requireNetns(t *testing.T) {
	t.Helper()
	if err := NetnsSupported(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

func namespaces(t *testing.T) string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// reaches says whether a TCP connection from namespace ns to addr opens
// within two seconds.
func reaches(ns, addr string) bool {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", "netns", "exec", ns, "timeout", "2", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port)).Run() == nil
}

// TestNetnsCluster starts three cores in namespaces: each
// process is culex itself (so SIGKILL hits it), clients reach both from
// the test's namespace, a partition cuts the nodes from each other but
// not from clients, isolation cuts everything, and the cleanup leaves no
// namespace behind.
func TestNetnsCluster(t *testing.T) {
	requireNetns(t)
	var hub string
	t.Run("cluster", func(t *testing.T) {
		c := Start(t, Options{Cores: 3, Netns: true})
		core, rep := c.Nodes[0], c.Nodes[1]
		hub = c.net.hub
		for _, n := range c.Nodes {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.PID()))
			if err != nil || exe != Binary(t) {
				t.Errorf("%s: process %d runs %q (%v), want culex", n.Name, n.PID(), exe, err)
			}
			if conn, err := net.DialTimeout("tcp", n.MQTT(), 2*time.Second); err != nil {
				t.Errorf("%s: MQTT from the test: %v", n.Name, err)
			} else {
				conn.Close()
			}
		}
		if !reaches(rep.NS, core.ClusterAddr) {
			t.Fatal("one core does not reach the other's cluster port")
		}
		c.Partition([]*Node{core}, []*Node{rep})
		if reaches(rep.NS, core.ClusterAddr) || reaches(core.NS, rep.ClusterAddr) {
			t.Error("partitioned nodes still reach each other")
		}
		if conn, err := net.DialTimeout("tcp", core.MQTT(), 2*time.Second); err != nil {
			t.Errorf("a partition cut the test's clients off: %v", err)
		} else {
			conn.Close()
		}
		c.Heal()
		if !reaches(rep.NS, core.ClusterAddr) {
			t.Error("healed nodes do not reach each other")
		}
		c.Isolate(core)
		if conn, err := net.DialTimeout("tcp", core.MQTT(), time.Second); err == nil {
			conn.Close()
			t.Error("an isolated node still takes connections")
		}
		c.Rejoin(core)
		if conn, err := net.DialTimeout("tcp", core.MQTT(), 2*time.Second); err != nil {
			t.Errorf("a rejoined node does not take connections: %v", err)
		} else {
			conn.Close()
		}
		c.KillTogether(c.Nodes[1:]...)
		for _, n := range c.Nodes[1:] {
			if n.Running() {
				t.Errorf("%s runs after KillTogether", n.Name)
			}
			n.Restart()
		}
		for _, n := range c.Nodes[1:] {
			n.WaitReady()
		}
	})
	if strings.Contains(namespaces(t), hub) {
		t.Errorf("namespaces of %s left after the cleanup:\n%s", hub, namespaces(t))
	}
}

// TestCleanStale: a namespace named for a process that no longer exists
// is removed when a namespaced cluster is first made.
func TestCleanStale(t *testing.T) {
	requireNetns(t)
	stale := fmt.Sprintf("%s%d-1-c0", nsPrefix, 1<<22+1) // above pid_max
	if err := ip("netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip("netns", "delete", stale) })
	cleanStale()
	if strings.Contains(namespaces(t), stale) {
		t.Errorf("stale namespace %s not removed", stale)
	}
}
