package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// The cluster mode of `culex bench compare` (--cluster): each workload
// runs against a fresh three-node Culex cluster, a fresh three-node NATS
// server cluster with its MQTT listener and JetStream (the peer), and a
// single Culex node (the local baseline for CPU per message), publishers
// on the first node and subscribers on the other two.

// Cluster deployments, as named in --brokers and the report.
const (
	culexCluster = "culex-3"
	natsCluster  = "nats-3"
	culexSingle  = "culex-1"
)

// clusterNodes is the size of both clusters.
const clusterNodes = 3

// ClusterMatrix is the cluster mode's workloads: fan-in 10:1, pairs 10:10
// and fan-out 1:10 at QoS 0 and 1, 64 B, as fast as they go, and at QoS 1
// delivering clusterQoS1Rate; fan-in QoS 1 to persistent sessions, as
// fast as it goes and at 10k msg/s; the cross-node takeover; then
// (idle > 0) idle connections on one node.
func ClusterMatrix(idle int) []Workload {
	var ws []Workload
	for _, t := range topologies[:3] {
		for qos := 0; qos <= 1; qos++ {
			ws = append(ws, Workload{Name: fmt.Sprintf("%s qos%d 64B max", t.name, qos),
				Pubs: t.pubs, Subs: t.subs, Topic: t.topic, SubTopic: t.subTopic, QoS: qos, Size: 64})
		}
	}
	// The same QoS 1 traffic at one delivered rate for every deployment:
	// CPU per message compared at the same work. At max the single node
	// delivers more than the cluster, and a busier broker batches more.
	for _, t := range topologies[:3] {
		ws = append(ws, Workload{Name: fmt.Sprintf("%s qos1 64B %dk/s", t.name, clusterQoS1Rate/1000),
			Pubs: t.pubs, Subs: t.subs, Topic: t.topic, SubTopic: t.subTopic, QoS: 1, Size: 64,
			Rate: float64(clusterQoS1Rate) / float64(t.fanout)})
	}
	// QoS 1 to persistent sessions (issue 14): every message stored once
	// on a majority of the cores, fsynced, before its PUBACK; as fast as it
	// goes, and at 10k msg/s for the latency.
	fanIn := topologies[0]
	for _, rate := range []float64{0, fixedDelivered} {
		load := "max"
		if rate > 0 {
			load = fmt.Sprintf("%dk/s", int(rate)/1000)
		}
		ws = append(ws, Workload{Name: fmt.Sprintf("%s qos1 64B persistent %s", fanIn.name, load),
			Pubs: fanIn.pubs, Subs: fanIn.subs, Topic: fanIn.topic, SubTopic: fanIn.subTopic, QoS: 1, Size: 64,
			Rate: rate, Persistent: true})
	}
	ws = append(ws, Workload{Name: fmt.Sprintf("takeover x%d", takeovers), Takeover: takeovers})
	ws = append(ws, Workload{Name: fmt.Sprintf("reconnect %d persistent", reconnectSessions), Reconnect: reconnectSessions},
		Workload{Name: fmt.Sprintf("reconnect %d persistent at once", reconnectSessions), Reconnect: reconnectSessions, AtOnce: true})
	if idle > 0 {
		ws = append(ws, Workload{Name: fmt.Sprintf("idle %d", idle), Idle: idle})
	}
	return ws
}

// clusterQoS1Rate is the delivered rate of the cluster's fixed-load QoS 1
// workloads: issue 13's goal for cross-node QoS 1.
const clusterQoS1Rate = 100000

// takeovers is how many client ids the takeover workload moves.
const takeovers = 200

// takeover connects takeovers clients to node 1, then each client id
// again to node 2 (a 3.1.1 clean session), timing CONNECT to CONNACK on
// node 2, and counts the first connections closed by their takeover
// within a second of the last one, and the connections refused.
func takeover(d *deployment, res *Result) {
	to := d.pub
	if len(d.subs) > 0 {
		to = d.subs[0]
	}
	var lat []time.Duration
	var old []net.Conn
	defer func() {
		for _, c := range old {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range res.Workload.Takeover {
		id := fmt.Sprintf("culex-bench-takeover-%d-%d", os.Getpid(), i)
		a, err := probeConnectID(d.pub, id)
		if err != nil {
			res.TakeoverRefused++ // counted with the refusals: the id did not connect
			continue
		}
		old = append(old, a)
		t0 := time.Now()
		b, err := probeConnectID(to, id)
		if err != nil {
			res.TakeoverRefused++ // the second node refused the id (or closed it)
			continue
		}
		lat = append(lat, time.Since(t0))
		defer b.Close()
	}
	deadline := time.Now().Add(time.Second)
	for _, a := range old {
		a.SetReadDeadline(deadline)
		var buf [64]byte
		for {
			if _, err := a.Read(buf[:]); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					res.TookOver++
				}
				break
			}
		}
	}
	if len(lat) == 0 {
		res.Err = fmt.Sprintf("all %d takeovers failed to connect", res.Workload.Takeover)
		return
	}
	slices.Sort(lat)
	res.TakeoverP50US = float64(lat[len(lat)/2].Microseconds())
	res.TakeoverP99US = float64(lat[len(lat)*99/100].Microseconds())
	res.WallS = time.Since(start).Seconds()
}

// clusterSpec starts a cluster of one kind.
type clusterSpec struct {
	kind       string // culexCluster or natsCluster
	bin        string // culex or nats-server binary
	replicants int    // culexCluster: replicants besides the clusterNodes cores, peers the cores
}

var clusterSeq atomic.Uint64

// start starts the nodes on free loopback ports, each with its own data
// directory, and returns once a message published on the first node
// reaches a subscriber on each of the others. The replicants come last
// in d.procs; d.subs are the other cores.
func (s clusterSpec) start(ctx context.Context) (d *deployment, err error) {
	if s.replicants > 0 && s.kind != culexCluster {
		return nil, fmt.Errorf("compare: %s has no replicants", s.kind)
	}
	nodes := clusterNodes + s.replicants
	dir, err := os.MkdirTemp("", "culex-compare-cluster-")
	if err != nil {
		return nil, err
	}
	d = &deployment{dir: dir}
	started := d // the returns below set d to nil
	defer func() {
		if err != nil {
			started.stop()
		}
	}()
	var mqtt, route, client []int
	for range nodes {
		ports, err := freeLoopbackPorts(3)
		if err != nil {
			return nil, err
		}
		mqtt, route, client = append(mqtt, ports[0]), append(route, ports[1]), append(client, ports[2])
	}
	secret := fmt.Sprintf("bench-%d-%d", os.Getpid(), clusterSeq.Add(1))
	for i := range nodes {
		ndir := filepath.Join(dir, "n"+strconv.Itoa(i))
		if err := os.MkdirAll(ndir, 0o755); err != nil {
			return nil, err
		}
		role := "core"
		if i >= clusterNodes {
			role = "replicant"
		}
		var peers []string // the other cores
		for j, p := range route[:clusterNodes] {
			if j != i {
				peers = append(peers, fmt.Sprintf("127.0.0.1:%d", p))
			}
		}
		cfgFile := filepath.Join(ndir, "node.conf")
		var conf string
		var argv []string
		switch s.kind {
		case culexCluster:
			conf = fmt.Sprintf(`log_level: warn
data_dir: %q
listeners: [tcp://127.0.0.1:%d]
sys_interval: 0s
cluster:
  name: culex-bench
  node_name: n%d
  role: %s
  listen: 127.0.0.1:%d
  peers: [%s]
  secret: %q
`, filepath.Join(ndir, "data"), mqtt[i], i, role, route[i], strings.Join(peers, ", "), secret)
			argv = []string{s.bin, "serve", "-c", cfgFile}
		case natsCluster:
			var routes []string
			for _, p := range peers {
				routes = append(routes, "nats-route://"+p)
			}
			conf = fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: culex-bench, listen: 127.0.0.1:%d, routes: [%s] }
mqtt { listen: 127.0.0.1:%d }
`, i, client[i], filepath.Join(ndir, "js"), route[i], strings.Join(routes, ", "), mqtt[i])
			argv = []string{s.bin, "-c", cfgFile}
		default:
			return nil, fmt.Errorf("compare: unknown cluster %q", s.kind)
		}
		if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		b, err := brokerSpec{name: fmt.Sprintf("%s n%d", s.kind, i), template: argv}.launch(ctx, ndir, mqtt[i])
		if err != nil {
			return nil, err
		}
		d.procs = append(d.procs, b)
	}
	d.pub, d.subs = mqtt[0], mqtt[1:clusterNodes]
	for i, p := range mqtt[1:] {
		if err := crossProbe(ctx, mqtt[0], p, 90*time.Second); err != nil {
			// The directory goes with the deployment: the logs of the
			// two nodes go in the error.
			return nil, fmt.Errorf("%s: %w; %s", s.kind, err, logTails(d.procs[0], d.procs[i+1]))
		}
	}
	return d, nil
}

func freeLoopbackPorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// crossProbe waits until a QoS 0 message published on port pub reaches a
// subscriber on port sub: the nodes have joined and route to each other.
func crossProbe(ctx context.Context, pub, sub int, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if last = probeOnce(pub, sub); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond): // between probes
		}
	}
	return fmt.Errorf("no message from port %d reached port %d within %v: %v", pub, sub, d, last)
}

func probeOnce(pub, sub int) error {
	topic := fmt.Sprintf("culex-bench/probe/%d/%d", os.Getpid(), clusterSeq.Add(1))
	s, err := probeConnect(sub)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := probeSend(s, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: topic}}}); err != nil {
		return err
	}
	if _, err := probeRead(s, packet.SUBACK, 5*time.Second); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	p, err := probeConnect(pub)
	if err != nil {
		return err
	}
	defer p.Close()
	for range 20 {
		if err := probeSend(p, &packet.Publish{Topic: topic, Payload: []byte("probe")}); err != nil {
			return err
		}
		if _, err := probeRead(s, packet.PUBLISH, 100*time.Millisecond); err == nil {
			return nil
		}
	}
	return errors.New("subscribed, but the published probes did not arrive")
}

type encoder interface {
	Encode(dst []byte, v packet.Version) ([]byte, error)
}

func probeSend(c net.Conn, p encoder) error {
	b, err := p.Encode(nil, packet.V311)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write(b)
	return err
}

// probeRead reads packets until one of type want, or d passes.
func probeRead(c net.Conn, want packet.Type, d time.Duration) (packet.Packet, error) {
	c.SetReadDeadline(time.Now().Add(d))
	for {
		p, err := packet.ReadPacket(c, packet.V311, 1<<20)
		if err != nil {
			return nil, err
		}
		if p.Type() == want {
			return p, nil
		}
	}
}

func probeConnect(port int) (net.Conn, error) {
	return probeConnectID(port, fmt.Sprintf("culex-bench-probe-%d-%d", os.Getpid(), clusterSeq.Add(1)))
}

// probeConnectID connects a 3.1.1 client with a clean session and client
// id id to the loopback port and waits for a successful CONNACK.
func probeConnectID(port int, id string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return nil, err
	}
	if err := probeSend(c, &packet.Connect{ProtocolName: "MQTT", Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: id}); err != nil {
		c.Close()
		return nil, err
	}
	p, err := probeRead(c, packet.CONNACK, 5*time.Second)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to port %d: %w", port, err)
	}
	if rc := p.(*packet.Connack).ReasonCode; rc != 0 {
		c.Close()
		return nil, fmt.Errorf("connect to port %d: CONNACK %d", port, rc)
	}
	return c, nil
}

// compareCluster runs the cluster matrix against each of o.brokers and
// writes the report.
func (o *compareOpts) compareCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ws := o.filter(ClusterMatrix(o.idle))
	started := time.Now()
	run := func(name string, w Workload) Result { return o.runDeployment(ctx, name, w) }
	results, err := o.runAll(ctx, ws, stderr, run)
	if err != nil {
		return err
	}
	runs, err := o.ratioRepeats(ctx, ws, results, stderr, run)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	writeClusterReport(&buf, o, args, results, runs, started)
	return o.write(buf.Bytes(), clusterBegin, clusterEnd, stdout, stderr, len(results), started)
}

// cpuRuns holds the CPU per message of each run, by workload and
// deployment.
type cpuRuns map[string]map[string][]float64

func (c cpuRuns) add(r Result) {
	if r.Err != "" || r.CPUPerMsgUS <= 0 {
		return
	}
	if c[r.Workload.Name] == nil {
		c[r.Workload.Name] = map[string][]float64{}
	}
	c[r.Workload.Name][r.Broker] = append(c[r.Workload.Name][r.Broker], r.CPUPerMsgUS)
}

// ratioWorkload reports whether w's CPU ratio is measured over several
// runs: the clean-session QoS 1 traffic the 2x goal is closest on. One
// run's CPU per message moves by up to a quarter on this machine.
func ratioWorkload(w Workload) bool {
	return w.QoS == 1 && !w.Persistent && w.Takeover == 0 && w.Reconnect == 0 && w.Idle == 0
}

// ratioRepeats runs culex-3 and culex-1 again on each ratio workload,
// alternating which goes first, until each has --ratio-runs runs, and
// returns every run's CPU per message (results' first).
func (o *compareOpts) ratioRepeats(ctx context.Context, ws []Workload, results []Result, stderr io.Writer, run func(name string, w Workload) Result) (cpuRuns, error) {
	runs := cpuRuns{}
	for _, r := range results {
		runs.add(r)
	}
	if !slices.Contains(o.brokers, culexCluster) || !slices.Contains(o.brokers, culexSingle) {
		return runs, nil
	}
	for _, w := range ws {
		if !ratioWorkload(w) {
			continue
		}
		for k := 1; k < o.ratioRuns; k++ {
			order := []string{culexCluster, culexSingle}
			if k%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, name := range order {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				res := run(name, w)
				fmt.Fprintf(stderr, "%s (run %d of %d)\n", res.line(), k+1, o.ratioRuns)
				runs.add(res)
			}
		}
	}
	return runs, nil
}

// runDeployment starts the named deployment, runs w against it, stops it.
func (o *compareOpts) runDeployment(ctx context.Context, name string, w Workload) Result {
	res := Result{Workload: w, Broker: name}
	var d *deployment
	var err error
	switch name {
	case culexCluster:
		// Only the idle workload gets a replicant (its clients' node):
		// the other workloads compare three nodes with three.
		reps := 0
		if w.Idle > 0 || w.Reconnect > 0 {
			reps = 1
		}
		d, err = clusterSpec{kind: culexCluster, bin: o.culexBin(), replicants: reps}.start(ctx)
	case natsCluster:
		if w.Reconnect > 0 {
			// Run by hand on this machine (2026-12-06): each of nats-server's
			// MQTT sessions is a replicated JetStream consumer; 10,000 of
			// them on three nodes ran JetStream out of open files (the
			// machine's 20,000) and it shut down, after minutes.
			res.Err = notApplicable + "not run: 10,000 persistent sessions are 10,000 replicated JetStream consumers in nats-server, which ran out of the machine's 20,000 open files in the runs tried"
			return res
		}
		d, err = clusterSpec{kind: natsCluster, bin: o.nats}.start(ctx)
	case culexSingle:
		if w.Reconnect > 0 {
			res.Err = notApplicable + "one node: no other node to reconnect to"
			return res
		}
		var b *broker
		b, err = brokerSpec{name: name, template: strings.Fields(o.culexCmd)}.start(ctx)
		if err == nil {
			d = &deployment{procs: []*broker{b}, pub: b.port}
		}
	default:
		err = fmt.Errorf("compare --cluster: unknown deployment %q", name)
	}
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer d.stop()
	if w.Takeover > 0 {
		takeover(d, &res)
		return res
	}
	if w.Reconnect > 0 {
		o.reconnect(ctx, d, &res)
		return res
	}
	if w.Idle > 0 {
		// The idle clients connect to the last node: culex-3's replicant,
		// nats-3's third node, culex-1's one node.
		d.node = d.procs[len(d.procs)-1]
		d.pub, d.subs = d.node.port, nil
	}
	o.measure(ctx, d, &res)
	return res
}

// culexBin is the culex binary that runs cluster nodes: --culex-bin, else
// this one.
func (o *compareOpts) culexBin() string {
	if o.culexBinary != "" {
		return o.culexBinary
	}
	self, _ := os.Executable()
	return self
}

// The cluster report sits between its own markers, next to the
// single-node one.
const (
	clusterBegin = "<!-- begin: generated by culex bench compare --cluster -->\n"
	clusterEnd   = "<!-- end: generated by culex bench compare --cluster -->\n"
)

func writeClusterReport(w io.Writer, o *compareOpts, args []string, results []Result, runs cpuRuns, started time.Time) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	kind := func(r Result) string {
		switch {
		case r.Workload.Takeover > 0:
			return "takeover"
		case r.Workload.Idle > 0:
			return "idle"
		case r.Workload.Reconnect > 0:
			return "reconnect"
		}
		return "traffic"
	}
	// each prints a section for the results of kind k, if any: head,
	// then row for each result, or an error row of cols columns (the
	// first two: workload, deployment) for a failed one.
	each := func(k string, cols int, head func(), row func(r Result)) {
		if !slices.ContainsFunc(results, func(r Result) bool { return kind(r) == k }) {
			return
		}
		head()
		for _, r := range results {
			if kind(r) != k {
				continue
			}
			if r.Err != "" {
				msg := r.Err
				if !strings.HasPrefix(msg, notApplicable) {
					msg = "error: " + msg
				}
				p("| %s | %s | %s |%s", r.Workload.Name, r.Broker, mdEscape(firstLine(msg)), strings.Repeat(" |", cols-3))
				continue
			}
			row(r)
		}
	}
	p("### Cluster: three nodes on one machine")
	p("")
	p("`culex bench compare %s` on %s, %s per workload; load average %s at start.",
		shellJoin(args), started.UTC().Format("2006-01-02 15:04 UTC"), o.duration, o.loadStart)
	p("Publishers on node 1, subscribers on nodes 2 and 3 (round-robin); %s is a Culex cluster, %s a NATS server cluster (`%s`, JetStream, MQTT listener), %s a single Culex node with every client on it (the local baseline). CPU and RSS are summed over the nodes; broker CPU and CPU per message are taken from the moment every client is connected until they begin to close (publishing and the drain: not the connects, client-id claims and closes), CPU per message over delivered messages.",
		culexCluster, natsCluster, o.nats, culexSingle)
	var names []string
	each("traffic", 10, func() {
		p("")
		p("| workload | deployment | delivered msg/s | lost | duplicates | p50 | p99 | broker CPU | CPU/msg | RSS |")
		p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	}, func(r Result) {
		s := r.Summary
		p("| %s | %s | %.0f | %d | %d | %s | %s | %.0f%% | %.2f µs | %d MiB |", r.Workload.Name, r.Broker, s.RecvRate, s.Lost,
			s.Duplicates, fmtUS(s.Latency.P50US), fmtUS(s.Latency.P99US), r.BrokerCPUPct, r.CPUPerMsgUS, r.BrokerRSSKiB/1024)
		if !slices.Contains(names, r.Workload.Name) {
			names = append(names, r.Workload.Name)
		}
	})
	if len(names) > 0 {
		p("")
		p("Broker CPU per delivered message, cross-node (%s) over local (%s), per topology and QoS (the goal: at most 2x). The %dk/s rows compare the two at the same delivered rate; the max rows each at its own (a busier broker batches more). The clean-session QoS 1 rows are the median of %d runs of each deployment (alternating; the first is the run above), with the range:", culexCluster, culexSingle, clusterQoS1Rate/1000, o.ratioRuns)
		p("")
		p("| workload | %s CPU/msg | %s CPU/msg | %s / %s |", culexCluster, culexSingle, culexCluster, culexSingle)
		p("|---|--:|--:|--:|")
	}
	for _, n := range names {
		c3, c1 := runs[n][culexCluster], runs[n][culexSingle]
		p("| %s | %s | %s | %s |", n, cpuPerMsg(c3), cpuPerMsg(c1), ratioX(median(c3), median(c1)))
	}
	each("takeover", 6, func() {
		p("")
		p("Cross-node takeover: %d client ids connected to node 1, then each again to node 2 (MQTT 3.1.1, clean session); CONNECT to CONNACK on node 2, how many node-1 connections the takeover closed, and how many connections were refused:", takeovers)
		p("")
		p("| workload | deployment | p50 | p99 | taken over | refused |")
		p("|---|---|--:|--:|--:|--:|")
	}, func(r Result) {
		p("| %s | %s | %s | %s | %d of %d | %d |", r.Workload.Name, r.Broker, fmtUS(r.TakeoverP50US), fmtUS(r.TakeoverP99US), r.TookOver, r.Workload.Takeover, r.TakeoverRefused)
	})
	each("reconnect", 15, func() { writeReconnectHead(p) }, func(r Result) { writeReconnectRow(p, r) })
	each("idle", 12, func() {
		p("")
		p("Idle connections, all on one node: %s's replicant (a fourth node, `cluster.role: replicant`, peers the three cores, started for this workload only), %s's node 3, %s's one node; MQTT 3.1.1 clients with clean sessions, no traffic. The RSS columns are that node's.", culexCluster, natsCluster, culexSingle)
		writeIdleNote(p)
		p("\"every node\" is the same summed over all the deployment's nodes (what each client costs the others too).")
		p("")
		p("| workload | deployment | %s every node: RSS before KiB | every node: RSS held KiB | every node: KiB per idle connection |", idleColumns)
		p("|---|---|%s--:|--:|--:|", idleAlign)
	}, func(r Result) {
		p("| %s | %s | %s %d | %d | %.2f |", r.Workload.Name, r.Broker, idleCells(r),
			r.AllBaseRSSKiB, r.AllHeldRSSKiB, r.kibPerConn(r.AllBaseRSSKiB, r.AllHeldRSSKiB))
	})
	p("")
	p("Commands of each run:")
	p("")
	for _, r := range results {
		if r.Prep != "" {
			p("- %s, %s, before it: `%s`", r.Workload.Name, r.Broker, r.Prep)
		}
		if r.Command != "" {
			p("- %s, %s: `%s`", r.Workload.Name, r.Broker, r.Command)
		}
	}
}

// cpuPerMsg is the median of a deployment's CPU per message runs, with
// their range when there are several, or "-" when it has none.
func cpuPerMsg(runs []float64) string {
	switch len(runs) {
	case 0:
		return "-"
	case 1:
		return fmt.Sprintf("%.2f µs", runs[0])
	}
	return fmt.Sprintf("%.2f µs (%.2f to %.2f)", median(runs), slices.Min(runs), slices.Max(runs))
}

// median is the middle of xs (the mean of the two middle ones), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ratioX is a / b as "1.85x", or "-" when either is missing.
func ratioX(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// logTails is the end of each broker's log, for an error.
func logTails(bs ...*broker) string {
	var out []string
	for _, b := range bs {
		log, _ := os.ReadFile(b.log.Name())
		if len(log) > 3000 {
			log = log[len(log)-3000:]
		}
		out = append(out, fmt.Sprintf("%s's log ends: %s", b.name, log))
	}
	return strings.Join(out, "; ")
}
