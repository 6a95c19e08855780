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

	BrokerCPUPct float64 // broker user+sys CPU over the bench run, % of one core
	BrokerRSSKiB int64   // peak VmRSS sampled during the run
	HeldRSSKiB   int64   // idle workloads: peak VmRSS while every client was connected and idle
	BaseRSSKiB   int64   // VmRSS before the bench connected
	CPUPerMsgUS  float64 // broker CPU (every node) per delivered message, microseconds
	// Takeover workload (compare --cluster): CONNECT to CONNACK on the
	// second node, and how many first connections it closed.
	TakeoverP50US, TakeoverP99US float64
	TookOver, TakeoverRefused    int
	Command                      string // the bench command line
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

	cluster     bool   // --cluster (cluster.go)
	nats        string // nats-server binary
	culexBinary string // culex binary of cluster nodes
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
	writeReport(&buf, o, args, results, started)
	return o.write(buf.Bytes(), reportBegin, reportEnd, stdout, stderr, len(results), started)
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
			res := run(name, w)
			fmt.Fprintln(stderr, res.line())
			results = append(results, res)
		}
	}
	return results, nil
}

// write writes report to stdout (--out -) or between the markers begin
// and end of the --out file.
func (o *compareOpts) write(report []byte, begin, end string, stdout, stderr io.Writer, n int, started time.Time) error {
	if o.out == "-" {
		_, err := stdout.Write(report)
		return err
	}
	if old, err := os.ReadFile(o.out); err == nil {
		report = spliceAt(old, report, begin, end)
	}
	if err := os.WriteFile(o.out, report, 0o644); err != nil {
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
	fs.SetOutput(stderr)
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
	fs.IntVar(&o.idle, "idle", 19000, "idle connections in the last workload (0: skip)")
	fs.StringVar(&o.locals, "local-addrs", "127.0.0.2-127.0.0.9", "source addresses for big connection counts")
	fs.BoolVar(&o.cluster, "cluster", false, "cluster mode: three-node Culex and NATS server clusters (and one Culex node) on this machine, publishers on one node, subscribers on the others; --brokers from "+culexCluster+","+natsCluster+","+culexSingle)
	fs.StringVar(&o.nats, "nats", "/usr/sbin/nats-server", "nats-server binary (--cluster)")
	fs.StringVar(&o.culexBinary, "culex-bin", "", "culex binary of the cluster nodes (--cluster; default: this one)")
	if err := fs.Parse(args); err != nil {
		return nil, err
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
// while sampling the CPU and RSS of d's processes (summed).
func (o *compareOpts) measure(ctx context.Context, d *deployment, res *Result) {
	w := res.Workload
	res.BaseRSSKiB = d.sample(procRSS)
	args := w.benchArgs(d.pub, o.duration.String(), o.drain.String(), o.locals)
	if len(d.subs) > 0 {
		var addrs []string
		for _, p := range d.subs {
			addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
		}
		args = append(args, "--sub-addrs", strings.Join(addrs, ","))
	}
	res.Command = "culex bench " + shellJoin(args)

	// The run is bounded: duration + drain + connect and close time.
	limit := o.duration + o.drain + 90*time.Second
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, o.benchBin, append([]string{"bench"}, args...)...)
	var out, errb bytes.Buffer
	var ph phaseWatch
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errb, &ph)

	cpu0 := d.sample(procCPU)
	start := time.Now()
	stopSample := make(chan struct{})
	var wg sync.WaitGroup
	var peak, held int64
	wg.Add(1)
	go func() { // sample RSS until the run ends
		defer wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			// The phase is read before the sample: a sample taken as the
			// clients begin to close does not count as held.
			connected := ph.phase() == "connected"
			if rss := d.sample(procRSS); rss > 0 {
				peak = max(peak, rss)
				if connected && ph.phase() == "connected" {
					held = max(held, rss)
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
	res.BrokerRSSKiB, res.HeldRSSKiB = peak, held
	res.BrokerCPUPct = round(float64(cpu1-cpu0)/clkTck/wall.Seconds()*100, 1)
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
		res.CPUPerMsgUS = round(float64(cpu1-cpu0)/clkTck*1e6/float64(s.Received), 2)
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
	if r.Workload.Idle > 0 {
		return fmt.Sprintf("%-34s %-9s %d connected, broker rss %d -> %d KiB held (%.2f KiB/conn)",
			r.Workload.Name, r.Broker, s.Clients.Connected, r.BaseRSSKiB, r.HeldRSSKiB, r.kibPerConn(r.HeldRSSKiB))
	}
	return fmt.Sprintf("%-34s %-9s %9.0f msg/s  p50 %s  p99 %s  lost %d  broker cpu %.0f%% rss %d MiB",
		r.Workload.Name, r.Broker, s.RecvRate, fmtUS(s.Latency.P50US), fmtUS(s.Latency.P99US), s.Lost,
		r.BrokerCPUPct, r.BrokerRSSKiB/1024)
}

// kibPerConn is the broker's RSS per idle connection: held over the
// connections, or peak when there was no held sample.
func (r Result) kibPerConn(rss int64) float64 {
	if r.Summary == nil || r.Summary.Clients.Connected == 0 || rss == 0 {
		return 0
	}
	return float64(rss-r.BaseRSSKiB) / float64(r.Summary.Clients.Connected)
}

// phaseWatch follows the "phase: NAME" lines of `culex bench --phases`.
type phaseWatch struct {
	mu      sync.Mutex
	partial []byte
	current string
}

func (w *phaseWatch) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if name, ok := strings.CutPrefix(string(w.partial[:i]), "phase: "); ok {
			w.current = name
		}
		w.partial = w.partial[i+1:]
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
)

// splice puts report between the markers in old, or returns the report
// alone, within markers, when old has none.
func splice(old, report []byte) []byte { return spliceAt(old, report, reportBegin, reportEnd) }

// spliceAt is splice between the markers begin and end.
func spliceAt(old, report []byte, begin, end string) []byte {
	wrapped := append(append([]byte(begin), report...), end...)
	i := bytes.Index(old, []byte(begin))
	j := bytes.Index(old, []byte(end))
	if i < 0 || j < i {
		return wrapped
	}
	out := append([]byte{}, old[:i]...)
	out = append(out, wrapped...)
	return append(out, old[j+len(end):]...)
}
