package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/cliflag"
)

// DefaultCulexCmd starts the Culex side; {self} is this binary, {port} a
// free loopback port, {dir} a scratch data directory.
const DefaultCulexCmd = "{self} serve --listen tcp://127.0.0.1:{port} --data-dir {dir} --log-level warn"

// Result is one workload against one broker.
type Result struct {
	Workload Workload
	Broker   string
	Summary  *Summary
	Err      string

	// BrokerCPUPct is the broker's user+sys CPU, % of one core, and
	// CPUPerMsgUS its CPU (every node) per delivered message in µs, both
	// over the messaging window of a traffic run (from "every client
	// connected" to "closing": publishing and the drain) and over the
	// whole run otherwise. RunCPUPerMsgUS is the whole run's per message
	// (connects, client-id claims and closes included).
	BrokerCPUPct   float64
	BrokerRSSKiB   int64 // peak VmRSS sampled during the run
	HeldRSSKiB     int64 // idle workloads: peak VmRSS while every client was connected and idle
	BaseRSSKiB     int64 // VmRSS before the bench connected
	CPUPerMsgUS    float64
	RunCPUPerMsgUS float64
	// ConnectPeakKiB is the peak VmRSS before the clients began to close:
	// the connect storm's, without the disconnect storm's.
	ConnectPeakKiB int64
	// Idle workloads of compare --cluster: the RSS figures are the
	// node's that holds the clients (deployment.node); these sum every
	// node, as BaseRSSKiB and HeldRSSKiB do elsewhere.
	AllBaseRSSKiB, AllHeldRSSKiB int64
	// Takeover workload (compare --cluster): CONNECT to CONNACK on the
	// second node, and how many first connections it closed.
	TakeoverP50US, TakeoverP99US float64
	TookOver, TakeoverRefused    int
	Command                      string       // the bench command line
	Prep                         string       // a bench command line run before it (the storm's sessions)
	Storm                        *stormResult // the reconnect workload's steps before the measured run
	WallS                        float64
}

// compareOpts are the flags of `culex bench compare`.
type compareOpts struct {
	matrix    string
	duration  time.Duration
	drain     time.Duration
	brokers   []string
	culexCmd  string
	mosquitto string
	mosqExtra string
	benchBin  string
	out       string
	only      *regexp.Regexp
	idle      int
	locals    string
	loadStart string
	tls       bool
	tlsFiles  *tlsFiles

	cluster     bool   // --cluster (cluster.go)
	nats        string // nats-server binary
	culexBinary string // culex binary of cluster nodes
	ratioRuns   int    // --ratio-runs: runs per workload of the CPU ratio
}

// Compare runs the matrix against Culex and Mosquitto, alternating which
// goes first, and writes the markdown report.
func Compare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCompare(args, stderr)
	if err != nil {
		return err
	}
	RaiseFileLimit()
	if o.cluster {
		return o.compareCluster(ctx, args, stdout, stderr)
	}
	ws, err := Matrix(o.matrix, o.idle)
	if err != nil {
		return err
	}
	begin, end := reportBegin, reportEnd
	if o.tls {
		ws = TLSMatrix(o.idle)
		if o.tlsFiles, err = makeTLSFiles(); err != nil {
			return fmt.Errorf("compare --tls: certificates: %w", err)
		}
		defer os.RemoveAll(o.tlsFiles.dir)
		begin, end = tlsReportBegin, tlsReportEnd
	}
	ws = o.filter(ws)
	specs := map[string]brokerSpec{
		"mosquitto": {name: "mosquitto", mosquitto: o.mosquitto, extraConf: o.mosqExtra},
	}
	if o.culexCmd == "mosquitto" {
		specs["culex"] = brokerSpec{name: "culex", mosquitto: o.mosquitto, extraConf: o.mosqExtra}
	} else {
		specs["culex"] = brokerSpec{name: "culex", template: strings.Fields(o.culexCmd)}
	}
	started := time.Now()
	results, err := o.runAll(ctx, ws, stderr, func(name string, w Workload) Result { return o.runOne(ctx, specs[name], w) })
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if o.tls {
		writeTLSReport(&buf, o, args, results, started)
	} else {
		writeReport(&buf, o, args, results, started)
	}
	return o.write(buf.Bytes(), begin, end, stdout, stderr, len(results), started)
}

// runAll runs each workload against each of o.brokers (run), printing a
// line per result.
func (o *compareOpts) runAll(ctx context.Context, ws []Workload, stderr io.Writer, run func(name string, w Workload) Result) ([]Result, error) {
	o.loadStart = loadAvg()
	var results []Result
	for i, w := range ws {
		for _, name := range o.order(i) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if w.TLS != nil && w.TLS.WS && name == "mosquitto" {
				continue // mosquitto 2.0's websockets listener does not start with TLS here
			}
			res := run(name, w)
			fmt.Fprintln(stderr, res.line())
			results = append(results, res)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return results, nil
}

// write writes report to stdout (--out -) or between the markers begin
// and end of the --out file (see splice).
func (o *compareOpts) write(report []byte, begin, end string, stdout, stderr io.Writer, n int, started time.Time) error {
	if o.out == "-" {
		_, err := stdout.Write(report)
		return err
	}
	old, _ := os.ReadFile(o.out) // none yet: the report alone, within markers
	if err := os.WriteFile(o.out, splice(old, report, begin, end), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s (%d results in %s)\n", o.out, n, time.Since(started).Round(time.Second))
	return nil
}

// filter keeps the workloads --only matches.
func (o *compareOpts) filter(ws []Workload) []Workload {
	if o.only == nil {
		return ws
	}
	var keep []Workload
	for _, w := range ws {
		if o.only.MatchString(w.Name) {
			keep = append(keep, w)
		}
	}
	return keep
}

// order is the brokers' order for the i-th workload: it alternates, so
// that neither always gets a cold or a warm machine.
func (o *compareOpts) order(i int) []string {
	order := append([]string(nil), o.brokers...)
	if i%2 == 1 {
		for l, r := 0, len(order)-1; l < r; l, r = l+1, r-1 {
			order[l], order[r] = order[r], order[l]
		}
	}
	return order
}

func parseCompare(args []string, stderr io.Writer) (*compareOpts, error) {
	fs := flag.NewFlagSet("culex bench compare", flag.ContinueOnError)
	o := &compareOpts{}
	var quick bool
	var brokers, only string
	self, _ := os.Executable()
	fs.StringVar(&o.matrix, "matrix", "full", "workload matrix: full or quick")
	fs.BoolVar(&quick, "quick", false, "smoke test: --matrix quick, 3s per workload, 1000 idle connections")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "publishing time per workload (idle: holding time)")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "longest wait for in-flight messages after publishing")
	fs.StringVar(&brokers, "brokers", "culex,mosquitto", "brokers to run, in order")
	fs.StringVar(&o.culexCmd, "culex-cmd", DefaultCulexCmd, `command that starts Culex ({self}, {port}, {dir}); "mosquitto" runs mosquitto in its place`)
	fs.StringVar(&o.mosquitto, "mosquitto", "/usr/sbin/mosquitto", "mosquitto binary")
	fs.StringVar(&o.mosqExtra, "mosquitto-conf", "", `extra mosquitto.conf lines ("\n" separates lines)`)
	fs.StringVar(&o.benchBin, "bench-bin", self, "culex binary that runs each workload (`culex bench run ...`)")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", `report file ("-": stdout)`)
	fs.StringVar(&only, "only", "", "run only workloads whose name matches this regexp")
	fs.IntVar(&o.idle, "idle", 19000, "idle connections in the last workload (--cluster: all on one node; 0: skip)")
	fs.StringVar(&o.locals, "local-addrs", "127.0.0.2-127.0.0.9", "source addresses for big connection counts")
	fs.BoolVar(&o.tls, "tls", false, "run the TLS workloads instead (handshakes/s, idle TLS and WSS memory, reconnect storm) into their own section of --out")
	fs.BoolVar(&o.cluster, "cluster", false, "cluster mode: three-node Culex and NATS server clusters (and one Culex node) on this machine, publishers on one node, subscribers on the others; --brokers from "+culexCluster+","+natsCluster+","+culexSingle)
	fs.StringVar(&o.nats, "nats", "/usr/sbin/nats-server", "nats-server binary (--cluster)")
	fs.StringVar(&o.culexBinary, "culex-bin", "", "culex binary of the cluster nodes (--cluster; default: this one)")
	fs.IntVar(&o.ratioRuns, "ratio-runs", 5, "runs of "+culexCluster+" and "+culexSingle+" per QoS 1 workload (--cluster): the CPU per message ratio is of their medians")
	if err := cliflag.Parse(fs, args, stderr, nil); err != nil {
		return nil, err
	}
	if o.ratioRuns < 1 {
		return nil, fmt.Errorf("compare: --ratio-runs %d: at least 1", o.ratioRuns)
	}
	if o.tls && o.cluster {
		return nil, fmt.Errorf("compare: --tls and --cluster are separate runs; give one of them")
	}
	if o.cluster && !flagSet(fs, "brokers") {
		brokers = culexCluster + "," + natsCluster + "," + culexSingle
	}
	if quick {
		o.matrix = "quick"
		if !flagSet(fs, "duration") {
			o.duration = 3 * time.Second
		}
		if !flagSet(fs, "idle") {
			o.idle = 1000
		}
	}
	o.mosqExtra = strings.ReplaceAll(o.mosqExtra, `\n`, "\n")
	if o.mosqExtra != "" && !strings.HasSuffix(o.mosqExtra, "\n") {
		o.mosqExtra += "\n"
	}
	for _, b := range strings.Split(brokers, ",") {
		switch b = strings.TrimSpace(b); {
		case o.cluster && b != culexCluster && b != natsCluster && b != culexSingle:
			return nil, fmt.Errorf("compare --cluster: unknown deployment %q (%s, %s, %s)", b, culexCluster, natsCluster, culexSingle)
		case !o.cluster && b != "culex" && b != "mosquitto":
			return nil, fmt.Errorf("compare: unknown broker %q (culex, mosquitto)", b)
		}
		o.brokers = append(o.brokers, strings.TrimSpace(b))
	}
	if only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			return nil, fmt.Errorf("compare --only: %w", err)
		}
		o.only = re
	}
	return o, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runOne starts a fresh broker, runs one workload against it as a child
// `culex bench` process while sampling the broker's CPU and RSS, and stops
// the broker.
func (o *compareOpts) runOne(ctx context.Context, spec brokerSpec, w Workload) Result {
	res := Result{Workload: w, Broker: spec.name}
	if w.TLS != nil {
		spec = o.tlsFiles.spec(spec, w)
	}
	b, err := spec.start(ctx)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	d := &deployment{procs: []*broker{b}, pub: b.port}
	defer d.stop()
	o.measure(ctx, d, &res)
	return res
}

// deployment is what a workload runs against: one broker, or the nodes of
// a cluster with publishers on one node and subscribers on the others.
type deployment struct {
	procs []*broker
	pub   int    // publishers' MQTT port
	subs  []int  // subscribers' MQTT ports; none: pub
	dir   string // removed by stop, if set
	// node, when set, is the node of procs the idle clients connect to:
	// the RSS figures are its own, the sums over procs go to
	// Result.AllBaseRSSKiB and AllHeldRSSKiB.
	node *broker
}

func (d *deployment) stop() {
	for _, b := range d.procs {
		b.stop()
		b.cleanup()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// rss is the VmRSS of the node (the sum when node is not set) and the sum
// over every process.
func (d *deployment) rss() (own, all int64) {
	all = d.sample(procRSS)
	if d.node == nil {
		return all, all
	}
	own, _ = procRSS(d.node.cmd.Process.Pid)
	return own, all
}

// sample sums f over the deployment's processes.
func (d *deployment) sample(f func(pid int) (int64, error)) int64 {
	var sum int64
	for _, b := range d.procs {
		if v, err := f(b.cmd.Process.Pid); err == nil {
			sum += v
		}
	}
	return sum
}

// measure runs res.Workload against d as a child `culex bench` process
// while sampling the CPU and RSS of d's processes (summed). A TLS
// workload runs against a single broker (d.pub), its storm after a first
// run that makes the sessions.
func (o *compareOpts) measure(ctx context.Context, d *deployment, res *Result) {
	w := res.Workload
	args := w.benchArgs(d.pub, o.duration.String(), o.drain.String(), o.locals)
	if len(d.subs) > 0 {
		var addrs []string
		for _, p := range d.subs {
			addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
		}
		args = append(args, "--sub-addrs", strings.Join(addrs, ","))
	}
	if w.TLS != nil {
		var prep []string
		args, prep = o.tlsFiles.tlsArgs(w, d.pub, o.duration.String(), o.locals)
		if prep != nil {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			out, err := exec.CommandContext(pctx, o.benchBin, append([]string{"bench"}, prep...)...).CombinedOutput()
			cancel()
			if err != nil {
				res.Err = fmt.Sprintf("prep %s: %v: %.300s", shellJoin(prep), err, out)
				return
			}
			res.Prep = "culex bench " + shellJoin(prep)
			// The storm starts from a broker at rest: what the first
			// run left (its garbage, its disconnects) settles first.
			settleRSS(ctx, d)
		}
	}
	o.sampled(ctx, d, res, args, o.duration+o.drain+90*time.Second)
}

// sampled runs `culex bench args...` as a child process, within limit,
// while sampling the CPU and RSS of d's processes (summed), and fills
// res with its summary and the samples.
func (o *compareOpts) sampled(ctx context.Context, d *deployment, res *Result, args []string, limit time.Duration) {
	res.BaseRSSKiB, res.AllBaseRSSKiB = d.rss()
	res.Command = "culex bench " + shellJoin(args)
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, o.benchBin, append([]string{"bench"}, args...)...)
	var out, errb bytes.Buffer
	// The CPU and time at each phase line, taken as the line comes.
	var win struct {
		sync.Mutex
		cpu map[string]int64
		at  map[string]time.Time
	}
	win.cpu, win.at = map[string]int64{}, map[string]time.Time{}
	ph := phaseWatch{onPhase: func(name string) {
		c, t := d.sample(procCPU), time.Now()
		win.Lock()
		win.cpu[name], win.at[name] = c, t
		win.Unlock()
	}}
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errb, &ph)

	cpu0 := d.sample(procCPU)
	start := time.Now()
	stopSample := make(chan struct{})
	var wg sync.WaitGroup
	var peak, held, early, allHeld int64
	var since time.Time // when the clients were first seen all connected
	wg.Add(1)
	go func() { // sample RSS until the run ends
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			// The phase is read before the sample: a sample taken as the
			// clients begin to close does not count as held.
			connected := ph.phase() == "connected"
			if connected && since.IsZero() {
				since = time.Now()
			}
			closing := ph.phase() == "closing"
			if rss, all := d.rss(); rss > 0 {
				peak = max(peak, rss)
				if !closing {
					early = max(early, rss)
				}
				if connected && ph.phase() == "connected" && time.Since(since) >= settle {
					held, allHeld = max(held, rss), max(allHeld, all)
				}
			}
			select {
			case <-stopSample:
				return
			case <-t.C:
			}
		}
	}()
	runErr := cmd.Run()
	wall := time.Since(start)
	cpu1 := d.sample(procCPU)
	close(stopSample)
	wg.Wait()

	res.WallS = wall.Seconds()
	res.BrokerRSSKiB, res.HeldRSSKiB, res.ConnectPeakKiB, res.AllHeldRSSKiB = peak, held, early, allHeld
	cpu, secs := cpu1-cpu0, wall.Seconds()
	win.Lock()
	wc, okc := win.cpu["connected"]
	we, oke := win.cpu["closing"]
	ws := win.at["closing"].Sub(win.at["connected"]).Seconds()
	if w := res.Workload; okc && oke && ws > 0 && w.Idle == 0 && w.TLS == nil && w.Reconnect == 0 {
		cpu, secs = we-wc, ws
	}
	win.Unlock()
	res.BrokerCPUPct = round(float64(cpu)/clkTck/secs*100, 1)
	if runErr != nil {
		res.Err = fmt.Sprintf("%v: %.300s", runErr, errb.String())
		return
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		res.Err = fmt.Sprintf("bad summary: %v", err)
		return
	}
	res.Summary = &s
	if s.Received > 0 {
		res.CPUPerMsgUS = round(float64(cpu)/clkTck*1e6/float64(s.Received), 2)
		res.RunCPUPerMsgUS = round(float64(cpu1-cpu0)/clkTck*1e6/float64(s.Received), 2)
	}
}

// settle is how long after every client connected the held RSS is
// first sampled: what is held is the steady state, not the tail of the
// connect storm (RSS peak covers that).
const settle = 2 * time.Second

// settleRSS's bounds: a quiet time a little longer than the listener's
// 30 s between memory returns, and the longest wait.
const (
	settleQuiet = 36 * time.Second
	settleMax   = 60 * time.Second
)

// settleRSS waits until the RSS of d's processes has not gone down for
// settleQuiet (the listener returns a storm's memory at most every 30 s),
// at most settleMax.
func settleRSS(ctx context.Context, d *deployment) {
	start := time.Now()
	low, lowAt := int64(1<<62), start
	for time.Since(start) < settleMax && ctx.Err() == nil {
		if rss := d.sample(procRSS); rss > 0 && rss < low {
			low, lowAt = rss, time.Now()
		}
		if time.Since(lowAt) >= settleQuiet {
			return
		}
		time.Sleep(250 * time.Millisecond) // sampling interval
	}
}

// line is the progress line of one result.
func (r Result) line() string {
	if r.Err != "" {
		return fmt.Sprintf("%-34s %-9s ERROR %s", r.Workload.Name, r.Broker, r.Err)
	}
	if r.Workload.Takeover > 0 {
		return fmt.Sprintf("%-34s %-9s p50 %s  p99 %s  taken over %d of %d, refused %d", r.Workload.Name, r.Broker,
			fmtUS(r.TakeoverP50US), fmtUS(r.TakeoverP99US), r.TookOver, r.Workload.Takeover, r.TakeoverRefused)
	}
	s := r.Summary
	if r.Workload.Reconnect > 0 {
		return fmt.Sprintf("%-34s %-9s dead seen %.2fs, %d/%d session present, all back %.2fs, all arrived %.2fs, CONNACK p99 %s, lost %d, dups %d, rss %d -> %d KiB, errors %s",
			r.Workload.Name, r.Broker, r.Storm.DeadS, s.SessionPresent, s.Clients.Target, s.ConnectS, s.ExpectS,
			fmtUS(s.ConnectLatency.P99US), s.Lost, s.Duplicates, r.BaseRSSKiB, r.BrokerRSSKiB, errorsLine(s.Errors))
	}
	if t := r.Workload.TLS; t != nil && t.Kind != "idle" {
		return fmt.Sprintf("%-40s %-9s %d/%d ready in %.2fs (%.0f/s), dial to CONNACK p99 %s, broker rss %d -> %d KiB held, %d peak connecting, %d peak",
			r.Workload.Name, r.Broker, s.Clients.Connected, s.Clients.Target, s.ConnectS, s.ConnectRate,
			fmtUS(s.ConnectLatency.P99US), r.BaseRSSKiB, r.HeldRSSKiB, r.ConnectPeakKiB, r.BrokerRSSKiB)
	}
	if r.Workload.Idle > 0 {
		return fmt.Sprintf("%-34s %-9s %d connected, broker rss %d -> %d KiB held (%.2f KiB/conn)%s",
			r.Workload.Name, r.Broker, s.Clients.Connected, r.BaseRSSKiB, r.HeldRSSKiB, r.kibPerConn(r.BaseRSSKiB, r.HeldRSSKiB), r.allNodes())
	}
	return fmt.Sprintf("%-34s %-9s %9.0f msg/s  p50 %s  p99 %s  lost %d  broker cpu %.0f%% %.2f µs/msg (whole run %.2f) rss %d MiB",
		r.Workload.Name, r.Broker, s.RecvRate, fmtUS(s.Latency.P50US), fmtUS(s.Latency.P99US), s.Lost,
		r.BrokerCPUPct, r.CPUPerMsgUS, r.RunCPUPerMsgUS, r.BrokerRSSKiB/1024)
}

// kibPerConn is the broker's RSS per idle connection: rss (held, or
// peak) less base over the connections.
func (r Result) kibPerConn(base, rss int64) float64 {
	if r.Summary == nil || r.Summary.Clients.Connected == 0 || rss == 0 {
		return 0
	}
	return float64(rss-base) / float64(r.Summary.Clients.Connected)
}

// allNodes is the progress line's note on every node's RSS when the
// idle clients held one node of several.
func (r Result) allNodes() string {
	if r.AllHeldRSSKiB == r.HeldRSSKiB && r.AllBaseRSSKiB == r.BaseRSSKiB {
		return ""
	}
	return fmt.Sprintf("; every node %d -> %d KiB (%.2f KiB/conn)", r.AllBaseRSSKiB, r.AllHeldRSSKiB, r.kibPerConn(r.AllBaseRSSKiB, r.AllHeldRSSKiB))
}

// phaseWatch follows the "phase: NAME" lines of `culex bench --phases`.
// onPhase, if set, is called with each phase's name as its line comes.
type phaseWatch struct {
	onPhase func(name string)

	mu      sync.Mutex
	partial []byte
	current string
}

func (w *phaseWatch) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.partial = append(w.partial, b...)
	var names []string
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if name, ok := strings.CutPrefix(string(w.partial[:i]), "phase: "); ok {
			w.current = name
			names = append(names, name)
		}
		w.partial = w.partial[i+1:]
	}
	w.mu.Unlock()
	if w.onPhase != nil {
		for _, n := range names {
			w.onPhase(n)
		}
	}
	return len(b), nil
}

func (w *phaseWatch) phase() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// shellJoin quotes args for a copy-pasteable command line.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " #%*?'\"$&;|<>()[]{}\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// The generated report sits between these markers, so that a file such as
// docs/benchmarks.md can keep hand-written sections (other benchmarks, with
// their commands) around it.
const (
	reportBegin = "<!-- begin: generated by culex bench compare -->\n"
	reportEnd   = "<!-- end: generated by culex bench compare -->\n"

	tlsReportBegin = "<!-- begin: generated by culex bench compare --tls -->\n"
	tlsReportEnd   = "<!-- end: generated by culex bench compare --tls -->\n"
)

// splice puts report between the markers begin and end in old, or
// appends it, within markers, when old has none.
func splice(old, report []byte, begin, end string) []byte {
	wrapped := append(append([]byte(begin), report...), end...)
	i := bytes.Index(old, []byte(begin))
	j := bytes.Index(old, []byte(end))
	if i < 0 || j < i {
		// A new section goes after the main one, or at the end.
		k := bytes.Index(old, []byte(reportEnd))
		if len(old) == 0 || k < 0 && begin == reportBegin {
			return wrapped
		}
		if k < 0 {
			k = len(old)
		} else {
			k += len(reportEnd)
		}
		out := append([]byte{}, old[:k]...)
		out = append(append(out, '\n'), wrapped...)
		return append(out, old[k:]...)
	}
	out := append([]byte{}, old[:i]...)
	out = append(out, wrapped...)
	return append(out, old[j+len(end):]...)
}
