package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/clustertest"
)

// TestClusterHarness starts and stops the clusters of `culex bench
// compare --cluster`: three culex serve nodes, the same with a replicant
// (the idle workload's), and three nats-server nodes with MQTT and
// JetStream, each on free ports with its own store, ready once a message
// crosses from the first node to each other one.
func TestClusterHarness(t *testing.T) {
	culex := clustertest.Binary(t)
	specs := []clusterSpec{
		{kind: culexCluster, bin: culex},
		{kind: culexCluster, bin: culex, replicants: 1},
		{kind: natsCluster, bin: brokertest.Tool(t, "nats-server", "nats-server")},
	}
	for _, s := range specs {
		t.Run(fmt.Sprintf("%s+%d", s.kind, s.replicants), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d, err := s.start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.procs) != clusterNodes+s.replicants || len(d.subs) != clusterNodes-1 {
				t.Fatalf("%d processes, %d subscriber nodes", len(d.procs), len(d.subs))
			}
			for _, b := range d.procs[1:] { // the replicant last
				if err := crossProbe(ctx, d.pub, b.port, time.Minute); err != nil {
					t.Error(err)
				}
			}
			if s.replicants > 0 {
				// The cluster sees the last node as a replicant.
				conf := filepath.Join(d.dir, fmt.Sprintf("n%d", clusterNodes), "node.conf")
				out, err := exec.CommandContext(ctx, s.bin, "cluster", "status", "-c", conf).CombinedOutput()
				if !regexp.MustCompile(fmt.Sprintf(`(?m)^n%d +replicant `, clusterNodes)).Match(out) || strings.Count(string(out), " core ") != clusterNodes {
					t.Errorf("culex cluster status: %v\n%s", err, out)
				}
			}
			d.stop()
			for _, b := range d.procs {
				select {
				case <-b.exited:
				default:
					t.Errorf("%s still runs after stop", b.name)
				}
			}
			if _, err := os.Stat(d.dir); !os.IsNotExist(err) {
				t.Errorf("%s left behind: %v", d.dir, err)
			}
		})
	}
}

// TestClusterReportGolden renders the cluster report from made-up results:
// the traffic rows, culex-3's CPU per message over culex-1's for each
// topology and QoS, the takeover, the reconnect after a node is killed
// (culex-1 not applicable) and the idle connections (the node's RSS and
// every node's), with failed runs as error rows in their own table.
func TestClusterReportGolden(t *testing.T) {
	ws := ClusterMatrix(19000)
	find := func(name string) Workload {
		for _, w := range ws {
			if w.Name == name {
				return w
			}
		}
		t.Fatalf("no workload %q in %v", name, ws)
		return Workload{}
	}
	traffic := func(w, d string, rate, cpuPerMsg float64) Result {
		return Result{Workload: find(w), Broker: d, BrokerCPUPct: 150, BrokerRSSKiB: 90 << 10, CPUPerMsgUS: cpuPerMsg,
			Summary: &Summary{RecvRate: rate, Latency: LatencySummary{P50US: 800, P99US: 4200}},
			Command: "culex bench run --url tcp://127.0.0.1:PORT ..."}
	}
	idle := func(d string, base, held, allBase, allHeld int64) Result {
		return Result{Workload: find("idle 19000"), Broker: d, BaseRSSKiB: base, HeldRSSKiB: held, BrokerRSSKiB: held + 9000,
			AllBaseRSSKiB: allBase, AllHeldRSSKiB: allHeld,
			Summary: &Summary{Clients: ClientSummary{Target: 19000, Connected: 19000}}}
	}
	results := []Result{
		traffic("fan-in 10:1 qos0 64B max", culexCluster, 250000, 3.1),
		traffic("fan-in 10:1 qos0 64B max", natsCluster, 200000, 4.5),
		traffic("fan-in 10:1 qos0 64B max", culexSingle, 400000, 1.6),
		traffic("fan-in 10:1 qos1 64B max", culexSingle, 150000, 4),
		traffic("fan-in 10:1 qos1 64B max", natsCluster, 6000, 90),
		traffic("fan-in 10:1 qos1 64B max", culexCluster, 110000, 9.5),
		traffic("fan-out 1:10 qos1 64B max", culexCluster, 120000, 6),
		{Workload: find("fan-out 1:10 qos1 64B max"), Broker: culexSingle, Err: "start culex-1: no such file\nsecond line"},
		{Workload: find("takeover x200"), Broker: culexCluster, TakeoverP50US: 900, TakeoverP99US: 12000, TookOver: 200},
		{Workload: find("takeover x200"), Broker: natsCluster, Err: "all 200 takeovers failed to connect"},
		{Workload: find("reconnect 10000 persistent"), Broker: culexCluster, BaseRSSKiB: 380000, BrokerRSSKiB: 550000, BrokerCPUPct: 90,
			Storm: &stormResult{DeadS: 5.7}, Prep: "culex bench sub --clients 10000 ...", Command: "culex bench sub --clients 10000 --expect 20000 ...",
			Summary: &Summary{Clients: ClientSummary{Target: 10000, Connected: 10000}, SessionPresent: 10000, ConnectS: 15.4, ExpectS: 4.5,
				Duplicates: 12, ConnectLatency: LatencySummary{P50US: 1.2e6, P99US: 4.3e6}}},
		{Workload: find("reconnect 10000 persistent"), Broker: natsCluster, Err: "first run: 9000 of 10000 sessions connected"},
		{Workload: find("reconnect 10000 persistent"), Broker: culexSingle, Err: notApplicable + "one node: no other node to reconnect to"},
		idle(culexCluster, 60000, 128400, 300000, 372000),
		idle(natsCluster, 20000, 95000, 60000, 140000),
		idle(culexSingle, 15000, 80000, 15000, 80000),
	}
	o := &compareOpts{duration: 10 * time.Second, nats: "/usr/sbin/nats-server", loadStart: "0.50 0.40 0.30", ratioRuns: 3}
	// Two more runs of fan-in QoS 1 each: the ratio is of the medians
	// (8.5 over 4), the range beside them.
	runs := cpuRuns{}
	for _, r := range results {
		runs.add(r)
	}
	for _, r := range []Result{
		traffic("fan-in 10:1 qos1 64B max", culexCluster, 110000, 8.5),
		traffic("fan-in 10:1 qos1 64B max", culexSingle, 150000, 3.5),
		traffic("fan-in 10:1 qos1 64B max", culexSingle, 150000, 4.4),
		traffic("fan-in 10:1 qos1 64B max", culexCluster, 110000, 7),
	} {
		runs.add(r)
	}
	var b bytes.Buffer
	writeClusterReport(&b, o, []string{"--cluster", "--out", "-"}, results, runs, time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC))
	golden(t, "cluster.md", b.Bytes())

	// --only idle: no empty tables for the workloads that did not run.
	b.Reset()
	writeClusterReport(&b, o, []string{"--cluster", "--only", "idle"}, results[len(results)-3:], runs, time.Now())
	for _, absent := range []string{"delivered msg/s", "CPU/msg", "takeover"} {
		if bytes.Contains(b.Bytes(), []byte(absent)) {
			t.Errorf("idle-only report has %q:\n%s", absent, b.String())
		}
	}
	if !bytes.Contains(b.Bytes(), []byte("| idle 19000 | culex-3 | 19000/19000 | 60000 | 128400 |")) {
		t.Errorf("idle-only report lacks culex-3's idle row:\n%s", b.String())
	}
}

// TestClusterMatrixIdle: the idle workload comes last, with --idle's
// count, and none at --idle 0.
func TestClusterMatrixIdle(t *testing.T) {
	ws := ClusterMatrix(19000)
	if last := ws[len(ws)-1]; last.Name != "idle 19000" || last.Idle != 19000 {
		t.Errorf("last workload %+v, want idle 19000", last)
	}
	for _, w := range ClusterMatrix(0) {
		if w.Idle > 0 {
			t.Errorf("--idle 0 still runs %s", w.Name)
		}
	}
}

// TestClusterStartFailureStops: a node that does not start fails the
// deployment with an error, and what started is stopped (it panicked on
// the deployment the failed start had returned as nil).
func TestClusterStartFailureStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := clusterSpec{kind: culexCluster, bin: "/nonexistent/culex"}.start(ctx)
	if err == nil || d != nil {
		t.Fatalf("start with a missing binary: %v, %v; want an error and no deployment", d, err)
	}
}

// TestRatioRepeats: each clean-session QoS 1 traffic workload is run
// again on culex-3 and culex-1 until each has --ratio-runs runs,
// alternating which goes first; no other workload or deployment is, and
// nothing is when either deployment is not being run.
func TestRatioRepeats(t *testing.T) {
	ws := ClusterMatrix(0)
	var ran []string
	run := func(name string, w Workload) Result {
		ran = append(ran, w.Name+" "+name)
		return Result{Workload: w, Broker: name, CPUPerMsgUS: 2, Summary: &Summary{}}
	}
	o := &compareOpts{brokers: []string{culexCluster, natsCluster, culexSingle}, ratioRuns: 3}
	only := regexp.MustCompile("^(pairs 10:10 qos[01] 64B max|fan-in 10:1 qos1 64B persistent max|takeover x200)$")
	var sel []Workload
	for _, w := range ws {
		if only.MatchString(w.Name) {
			sel = append(sel, w)
		}
	}
	first := []Result{{Workload: sel[1], Broker: culexCluster, CPUPerMsgUS: 4}, {Workload: sel[1], Broker: culexSingle, CPUPerMsgUS: 1}}
	runs, err := o.ratioRepeats(context.Background(), sel, first, io.Discard, run)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pairs 10:10 qos1 64B max culex-1", "pairs 10:10 qos1 64B max culex-3",
		"pairs 10:10 qos1 64B max culex-3", "pairs 10:10 qos1 64B max culex-1"}
	if !slices.Equal(ran, want) {
		t.Fatalf("ran %q, want %q", ran, want)
	}
	if got := runs["pairs 10:10 qos1 64B max"][culexCluster]; !slices.Equal(got, []float64{4, 2, 2}) {
		t.Fatalf("culex-3's runs %v, want the first run's then the two more", got)
	}
	ran = nil
	o.brokers = []string{culexCluster, natsCluster}
	if _, err := o.ratioRepeats(context.Background(), sel, first, io.Discard, run); err != nil || len(ran) != 0 {
		t.Fatalf("without culex-1: ran %q (%v), want nothing", ran, err)
	}
}

// TestMedian: the middle value, the mean of the middle two, 0 for none.
func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}
