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

	BrokerCPUPct float64 // broker user+sys CPU over the bench run, % of one core
	BrokerRSSKiB int64   // peak VmRSS sampled during the run
	HeldRSSKiB   int64   // idle workloads: peak VmRSS while every client was connected and idle
	BaseRSSKiB   int64   // VmRSS before the bench connected
	// ConnectPeakKiB is the peak VmRSS before the clients began to close:
	// the connect storm's, without the disconnect storm's.
	ConnectPeakKiB int64
	Command        string // the bench command line
	Prep           string // a bench command line run before it (the storm's sessions)
	WallS          float64
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
}

// Compare runs the matrix against Culex and Mosquitto, alternating which
// goes first, and writes the markdown report.
func Compare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCompare(args, stderr)
	if err != nil {
		return err
	}
	RaiseFileLimit()
	ws, err := Matrix(o.matrix, o.idle)
	if err != nil {
		return err
	}
	if o.tls {
		ws = TLSMatrix(o.idle)
		if o.tlsFiles, err = makeTLSFiles(); err != nil {
			return fmt.Errorf("compare --tls: certificates: %w", err)
		}
		defer os.RemoveAll(o.tlsFiles.dir)
	}
	if o.only != nil {
		var keep []Workload
		for _, w := range ws {
			if o.only.MatchString(w.Name) {
				keep = append(keep, w)
			}
		}
		ws = keep
	}
	specs := map[string]brokerSpec{
		"mosquitto": {name: "mosquitto", mosquitto: o.mosquitto, extraConf: o.mosqExtra},
	}
	if o.culexCmd == "mosquitto" {
		specs["culex"] = brokerSpec{name: "culex", mosquitto: o.mosquitto, extraConf: o.mosqExtra}
	} else {
		specs["culex"] = brokerSpec{name: "culex", template: strings.Fields(o.culexCmd)}
	}
	started := time.Now()
	o.loadStart = loadAvg()
	var results []Result
	for i, w := range ws {
		order := append([]string(nil), o.brokers...)
		if i%2 == 1 { // alternate who goes first: neither always gets a cold or a warm machine
			for l, r := 0, len(order)-1; l < r; l, r = l+1, r-1 {
				order[l], order[r] = order[r], order[l]
			}
		}
		for _, name := range order {
			if ctx.Err() != nil {
				break
			}
			if w.TLS != nil && w.TLS.WS && name == "mosquitto" {
				continue // mosquitto 2.0's websockets listener does not start with TLS here
			}
			res := o.runOne(ctx, specs[name], w)
			fmt.Fprintln(stderr, res.line())
			results = append(results, res)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var buf bytes.Buffer
	if o.tls {
		writeTLSReport(&buf, o, args, results, started)
	} else {
		writeReport(&buf, o, args, results, started)
	}
	if o.out == "-" {
		_, err = stdout.Write(buf.Bytes())
		return err
	}
	report := buf.Bytes()
	begin, end := reportBegin, reportEnd
	if o.tls {
		begin, end = tlsReportBegin, tlsReportEnd
	}
	if old, err := os.ReadFile(o.out); err == nil {
		report = splice(old, report, begin, end)
	} else {
		report = splice(nil, report, begin, end)
	}
	if err := os.WriteFile(o.out, report, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s (%d results in %s)\n", o.out, len(results), time.Since(started).Round(time.Second))
	return nil
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
	fs.IntVar(&o.idle, "idle", 19000, "idle connections in the last workload (0: skip)")
	fs.StringVar(&o.locals, "local-addrs", "127.0.0.2-127.0.0.9", "source addresses for big connection counts")
	fs.BoolVar(&o.tls, "tls", false, "run the TLS workloads instead (handshakes/s, idle TLS and WSS memory, reconnect storm) into their own section of --out")
	if err := cliflag.Parse(fs, args, stderr, nil); err != nil {
		return nil, err
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
		if b = strings.TrimSpace(b); b != "culex" && b != "mosquitto" {
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
	defer b.cleanup()
	defer b.stop()
	pid := b.cmd.Process.Pid
	args := w.benchArgs(b.port, o.duration.String(), o.drain.String(), o.locals)
	if w.TLS != nil {
		var prep []string
		args, prep = o.tlsFiles.tlsArgs(w, b.port, o.duration.String(), o.locals)
		if prep != nil {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			out, err := exec.CommandContext(pctx, o.benchBin, append([]string{"bench"}, prep...)...).CombinedOutput()
			cancel()
			if err != nil {
				res.Err = fmt.Sprintf("prep %s: %v: %.300s", shellJoin(prep), err, out)
				return res
			}
			res.Prep = "culex bench " + shellJoin(prep)
			// The storm starts from a broker at rest: what the first
			// run left (its garbage, its disconnects) settles first.
			settleRSS(ctx, pid)
		}
	}
	res.BaseRSSKiB, _ = procRSS(pid)
	res.Command = "culex bench " + shellJoin(args)

	// The run is bounded: duration + drain + connect and close time.
	limit := o.duration + o.drain + 90*time.Second
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, o.benchBin, append([]string{"bench"}, args...)...)
	var out, errb bytes.Buffer
	var ph phaseWatch
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errb, &ph)

	cpu0, _ := procCPU(pid)
	start := time.Now()
	stopSample := make(chan struct{})
	var wg sync.WaitGroup
	var peak, held, early int64
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
			if rss, err := procRSS(pid); err == nil {
				peak = max(peak, rss)
				if !closing {
					early = max(early, rss)
				}
				if connected && ph.phase() == "connected" && time.Since(since) >= settle {
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
	cpu1, _ := procCPU(pid)
	close(stopSample)
	wg.Wait()

	res.WallS = wall.Seconds()
	res.BrokerRSSKiB, res.HeldRSSKiB, res.ConnectPeakKiB = peak, held, early
	res.BrokerCPUPct = round(float64(cpu1-cpu0)/clkTck/wall.Seconds()*100, 1)
	if runErr != nil {
		res.Err = fmt.Sprintf("%v: %.300s", runErr, errb.String())
		return res
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		res.Err = fmt.Sprintf("bad summary: %v", err)
		return res
	}
	res.Summary = &s
	return res
}

// settle is how long after every client connected the held RSS is
// first sampled: what is held is the steady state, not the tail of the
// connect storm (RSS peak covers that).
const settle = 2 * time.Second

// settleRSS waits until the broker's RSS has not gone down for 6 s (Culex
// returns a storm's memory within 5 s of the previous return), at most
// 30 s.
func settleRSS(ctx context.Context, pid int) {
	start := time.Now()
	low, lowAt := int64(1<<62), start
	for time.Since(start) < 30*time.Second && ctx.Err() == nil {
		if rss, err := procRSS(pid); err == nil && rss < low {
			low, lowAt = rss, time.Now()
		}
		if time.Since(lowAt) >= 6*time.Second {
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
	s := r.Summary
	if t := r.Workload.TLS; t != nil && t.Kind != "idle" {
		return fmt.Sprintf("%-40s %-9s %d/%d ready in %.2fs (%.0f/s), dial to CONNACK p99 %s, broker rss %d -> %d KiB held, %d peak connecting, %d peak",
			r.Workload.Name, r.Broker, s.Clients.Connected, s.Clients.Target, s.ConnectS, s.ConnectRate,
			fmtUS(s.ConnectLatency.P99US), r.BaseRSSKiB, r.HeldRSSKiB, r.ConnectPeakKiB, r.BrokerRSSKiB)
	}
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
