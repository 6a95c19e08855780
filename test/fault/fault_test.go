// Package fault_test is Culex's fault suite: real `culex serve`
// processes, each in a network namespace of its own (three cores, two
// replicants), publishers and persistent-session subscribers on
// different nodes, and faults injected while QoS 1 and QoS 2 traffic
// flows: SIGKILL, power loss, partitions, rolling restarts, takeovers. A
// checker counts, per message id, what the publishers had acknowledged and
// what every subscriber received; any acknowledged message that never
// arrives fails the suite (docs/cluster.md, "Fault suite").
//
//	go test ./test/fault/                         # short: seconds per fault
//	go test -timeout 2h ./test/fault/ -fault.long -fault.out results.md
//	CULEX_FAULT_LONG=1 go test -timeout 2h ./test/fault/
//
// It needs root, ip(8) and iptables(8); without them it skips, except
// where CI=true, where it fails.
package fault_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
)

var (
	longFlag = flag.Bool("fault.long", false, "long mode: minutes per scenario, three fault cycles (also CULEX_FAULT_LONG=1)")
	holdFlag = flag.Duration("fault.hold", 30*time.Second, "long mode: how long each fault lasts before it is healed (10 s to 60 s)")
	outFlag  = flag.String("fault.out", "", "write the results table (markdown, with date and commit) to this file")
)

func long() bool { return *longFlag || os.Getenv("CULEX_FAULT_LONG") == "1" }

// startCommit is the commit checked out when the suite started, the one
// its culex is built from (the tree may move on during a long run).
var startCommit = func() string {
	out, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	commit := strings.TrimSpace(string(out))
	if st, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(st) > 0 {
		commit += " with uncommitted changes"
	}
	return commit
}()

// scenarios is the suite, in the order it runs.
func scenarios() []scenario {
	return []scenario{
		{name: "kill-replicant", about: "SIGKILL of a replicant holding two persistent sessions and two publishers; restarted after the hold",
			victims: pick(replicant), fault: killRestart},
		{name: "kill-core", about: "SIGKILL of a core that is not the JetStream meta leader; restarted after the hold",
			victims: pick(follower), fault: killRestart},
		{name: "kill-leader", about: "SIGKILL of the JetStream meta leader; restarted after the hold",
			victims: pick(leaderCore), fault: killRestart},
		{name: "kill-two-cores", about: "SIGKILL of two cores at once (the meta leader and another): no majority until both restart",
			victims: pick(leaderCore, follower), fault: killRestart},
		{name: "power-loss-two-cores", about: "as kill-two-cores, and every write not fsynced by the two cores is discarded before they restart",
			victims: pick(leaderCore, follower), fault: powerLoss, power: true},
		{name: "partition-core", about: "a core that is not the leader cut from every other node (iptables drops); its clients stay connected to it",
			victims: pick(follower), fault: partitionVictims},
		{name: "isolate-core-link", about: "a core that is not the leader loses its link (down): nothing reaches it, its clients' connections hang until their keep-alive ends them; link up after the hold",
			victims: pick(follower), fault: isolateVictims},
		{name: "partition-leader", about: "the JetStream meta leader cut from every other node",
			victims: pick(leaderCore), fault: partitionVictims},
		{name: "partition-replicants", about: "both replicants cut from the three cores (the replicants still reach each other)",
			victims: pick(replicant, replicant), fault: partitionVictims},
		{name: "rolling-restart-drain", about: "every node in turn: `culex cluster drain`, SIGTERM, restart, ready (replicants, then cores, the leader last)",
			victims: rollingOrder, fault: rollingRestart},
		{name: "takeover-race", about: "the victim's subscribers reconnect to another node (same client id: a takeover) while the victim is SIGKILLed",
			victims: pick(follower), fault: takeoverRace},
		{name: "control-clean-sessions", about: "the checker's control: kill-core with clean sessions, which lose what was sent while they were away; the checker must count a loss",
			victims: pick(follower), fault: killRestart, clean: true},
	}
}

// TestFault runs every scenario. In short mode they run side by side,
// as many at once as -test.parallel allows (GOMAXPROCS: two here), each
// cluster in namespaces of its own; in long mode one after another.
func TestFault(t *testing.T) {
	requireNetns(t)
	t.Cleanup(func() { writeResults(t) }) // after the parallel subtests
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			if !long() {
				t.Parallel()
			}
			sc.run(t)
		})
	}
}

// Node choosers: each takes the next node of its kind not taken yet.
type chooser func(r *run, leader *clustertest.Node, taken []*clustertest.Node) *clustertest.Node

func replicant(r *run, _ *clustertest.Node, taken []*clustertest.Node) *clustertest.Node {
	return first(r, taken, func(n *clustertest.Node) bool { return n.Role == clustertest.Replicant })
}

func follower(r *run, leader *clustertest.Node, taken []*clustertest.Node) *clustertest.Node {
	return first(r, taken, func(n *clustertest.Node) bool { return n.Role == clustertest.Core && n != leader })
}

func leaderCore(_ *run, leader *clustertest.Node, _ []*clustertest.Node) *clustertest.Node {
	return leader
}

func first(r *run, taken []*clustertest.Node, ok func(*clustertest.Node) bool) *clustertest.Node {
	for _, n := range r.c.Nodes {
		if ok(n) && !slices.Contains(taken, n) {
			return n
		}
	}
	r.t.Fatal("no node left to choose")
	return nil
}

func pick(cs ...chooser) func(*run, *clustertest.Node) []*clustertest.Node {
	return func(r *run, leader *clustertest.Node) []*clustertest.Node {
		var out []*clustertest.Node
		for _, c := range cs {
			out = append(out, c(r, leader, out))
		}
		return out
	}
}

// rollingOrder is every node: replicants, then cores, the leader last.
func rollingOrder(r *run, leader *clustertest.Node) []*clustertest.Node {
	var out []*clustertest.Node
	for _, role := range []string{clustertest.Replicant, clustertest.Core} {
		for _, n := range r.c.Nodes {
			if n.Role == role && n != leader {
				out = append(out, n)
			}
		}
	}
	return append(out, leader)
}

// killRestart SIGKILLs every victim at once, holds, restarts them.
func killRestart(r *run) {
	r.c.KillTogether(r.victims...)
	r.hold()
	restart(r)
}

func restart(r *run) {
	for _, n := range r.victims {
		n.Restart()
	}
	for _, n := range r.victims {
		n.WaitReady()
	}
}

// powerLoss is killRestart with the victims' unsynced writes discarded
// while they are down.
func powerLoss(r *run) {
	r.c.KillTogether(r.victims...)
	for _, n := range r.victims {
		if err := r.power.cut(n); err != nil {
			r.t.Fatalf("power loss of %s: %v", n.Name, err)
		}
	}
	r.hold()
	restart(r)
}

// partitionVictims cuts the victims from the other nodes, holds, heals.
func partitionVictims(r *run) {
	r.c.Partition(r.victims, r.others)
	r.hold()
	r.c.Heal()
}

// isolateVictims takes the victims' links down, holds, brings them up.
func isolateVictims(r *run) {
	for _, n := range r.victims {
		r.c.Isolate(n)
	}
	r.hold()
	for _, n := range r.victims {
		r.c.Rejoin(n)
	}
}

// rollingRestart drains, stops, restarts each node in turn, under load.
func rollingRestart(r *run) {
	for _, n := range r.victims {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := n.Culex(ctx, "cluster", "drain", n.Name, "-c", n.ConfigFile())
		cancel()
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Logf("%s", strings.TrimSpace(out))
		r.drained(n)
		n.Stop()
		n.Restart()
		n.WaitReady()
		r.whole()
	}
}

// drained waits until no subscriber is connected to n any more.
func (r *run) drained(n *clustertest.Node) {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		on := false
		for _, s := range r.subs {
			if s.isLive() && s.at() == n {
				on = true
			}
		}
		if !on {
			return
		}
		pace(context.Background())
	}
	r.t.Fatalf("subscribers still on %s a minute after its drain", n.Name)
}

// takeoverRace moves the victim's subscribers to another node (a new
// connection with the same client id) while the victim is killed.
func takeoverRace(r *run) {
	v := r.victims[0]
	kill := make(chan struct{})
	go func() { defer close(kill); r.c.KillTogether(v) }()
	for _, s := range r.subs {
		if s.at() == v {
			s.move <- r.others[0]
		}
	}
	<-kill
	r.hold()
	restart(r)
}

// writeResults writes the results table where -fault.out says.
func writeResults(t *testing.T) {
	resultsMu.Lock()
	rows := append([]row(nil), results...)
	resultsMu.Unlock()
	var order []string
	for _, sc := range scenarios() {
		order = append(order, sc.name)
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		return slices.Index(order, scenarioOf(a)) - slices.Index(order, scenarioOf(b))
	})
	if len(rows) == 0 {
		return
	}
	mode := "short"
	if long() {
		mode = fmt.Sprintf("long (%d faults of %v per scenario)", timings().cycles, timings().hold)
	}
	doc := fmt.Sprintf("Fault suite, mode %s, %s, commit %s:\n\n%s", mode,
		time.Now().UTC().Format("2006-01-02 15:04 MST"), startCommit, table(rows))
	t.Logf("\n%s", doc)
	if *outFlag != "" {
		if err := os.WriteFile(*outFlag, []byte(doc), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func scenarioOf(w row) string {
	name, _, _ := strings.Cut(w.Scenario, " ")
	return name
}

// table renders rows as markdown.
func table(rows []row) string {
	var b strings.Builder
	b.WriteString("| scenario | QoS | sent | acked | failed | received | lost | duplicated | unacked received | sessions not found | usable again after |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range rows {
		if w.QoS == 0 {
			fmt.Fprintf(&b, "| %s |%s\n", w.Scenario, strings.Repeat(" - |", 10))
			continue
		}
		rec := w.Recovery.Round(10 * time.Millisecond).String()
		if w.Recovery < 0 {
			rec = "never"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %s |\n", w.Scenario, w.QoS, w.Sent, w.Acked,
			w.Failed, w.Received, w.Lost, w.Dups, w.Unacked, w.NoSession, rec)
	}
	return b.String()
}
