package bench

import (
	"os"
	"strings"
	"testing"
)

func TestMatrix(t *testing.T) {
	full, err := Matrix("full", 19000)
	if err != nil {
		t.Fatal(err)
	}
	// 4 topologies x 3 QoS x 2 sizes x 2 loads, then idle connections.
	if len(full) != 4*3*2*2+1 || full[len(full)-1].Idle != 19000 {
		t.Fatalf("full matrix: %d workloads", len(full))
	}
	names := map[string]bool{}
	for _, w := range full {
		if names[w.Name] {
			t.Errorf("duplicate workload name %q", w.Name)
		}
		names[w.Name] = true
		if strings.HasPrefix(w.Name, "fan-out 1:1000") && strings.HasSuffix(w.Name, "10k/s") && w.Rate != 10 {
			t.Errorf("%s: publish rate %v, want 10 (10k/s delivered)", w.Name, w.Rate)
		}
	}
	if _, err := Matrix("nope", 0); err == nil {
		t.Error("unknown matrix accepted")
	}
	q, _ := Matrix("quick", 0)
	args := q[0].benchArgs(1883, "3s", "5s", "")
	if _, _, err := ParseFlags(args[0], args[1:], os.Stderr); err != nil {
		t.Errorf("quick workload args do not parse: %v (%v)", err, args)
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"run", "--topic", "bench/%i", "--sub-topic", "bench/#", "it's"})
	want := `run --topic 'bench/%i' --sub-topic 'bench/#' 'it'\''s'`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestProcStats(t *testing.T) {
	pid := os.Getpid()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := procCPU(pid); err != nil {
		t.Error(err)
	}
	if rss, err := procRSS(pid); err != nil || rss <= 0 {
		t.Errorf("rss %d, %v", rss, err)
	}
}

func TestSpliceKeepsHandWrittenSections(t *testing.T) {
	first := splice(nil, []byte("table v1\n"), reportBegin, reportEnd)
	doc := append(append([]byte("# Intro\n"), first...), "## Other benchmarks\n"...)
	got := string(splice(doc, []byte("table v2\n"), reportBegin, reportEnd))
	want := "# Intro\n" + reportBegin + "table v2\n" + reportEnd + "## Other benchmarks\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// The TLS section goes after the main one the first time, and is
	// replaced in place after that.
	got = string(splice([]byte(got), []byte("tls v1\n"), tlsReportBegin, tlsReportEnd))
	got = string(splice([]byte(got), []byte("tls v2\n"), tlsReportBegin, tlsReportEnd))
	want = "# Intro\n" + reportBegin + "table v2\n" + reportEnd + "\n" + tlsReportBegin + "tls v2\n" + tlsReportEnd + "## Other benchmarks\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// So does the cluster section; the TLS one stays as it is.
	got = string(splice([]byte(got), []byte("cluster v1\n"), clusterBegin, clusterEnd))
	got = string(splice([]byte(got), []byte("cluster v2\n"), clusterBegin, clusterEnd))
	want = "# Intro\n" + reportBegin + "table v2\n" + reportEnd + "\n" + clusterBegin + "cluster v2\n" + clusterEnd +
		"\n" + tlsReportBegin + "tls v2\n" + tlsReportEnd + "## Other benchmarks\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestParseCompareModes: --tls and --cluster are separate runs, --cluster
// has its own deployments, and an unknown flag is a one-line error.
func TestParseCompareModes(t *testing.T) {
	var errb strings.Builder
	if _, err := parseCompare([]string{"--tls", "--cluster"}, &errb); err == nil {
		t.Error("--tls --cluster accepted")
	}
	o, err := parseCompare([]string{"--cluster"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{culexCluster, natsCluster, culexSingle}; strings.Join(o.brokers, ",") != strings.Join(want, ",") {
		t.Errorf("--cluster brokers %v, want %v", o.brokers, want)
	}
	if _, err := parseCompare([]string{"--cluster", "--brokers", "mosquitto"}, &errb); err == nil {
		t.Error("--cluster --brokers mosquitto accepted")
	}
	if _, err := parseCompare([]string{"--tls", "--brokers", "culex-3"}, &errb); err == nil {
		t.Error("--tls --brokers culex-3 accepted")
	}
	errb.Reset()
	if _, err := parseCompare([]string{"--clustre"}, &errb); err == nil || strings.Contains(err.Error(), "\n") || strings.Count(errb.String(), "\n") > 1 {
		t.Errorf("unknown flag: %v; stderr %q", err, errb.String())
	}
}
