package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (run go test -update if intended):\n%s", name, path, got)
	}
}

// normalize zeroes what a run measures, keeping what it counts.
func normalize(s *Summary) {
	s.Broker = "tcp://127.0.0.1:PORT"
	s.ElapsedS, s.PublishS, s.PubRate, s.RecvRate = 0, 0, 0, 0
	s.Latency = LatencySummary{Count: s.Latency.Count}
	s.ConnectS, s.ConnectRate = 0, 0
	s.ConnectLatency = LatencySummary{Count: s.ConnectLatency.Count}
	s.CPU = CPUSummary{}
}

// TestJSONGolden runs `culex bench run --json` against mosquitto; the
// counts are exact because the run is bounded by --limit.
func TestJSONGolden(t *testing.T) {
	port := startMosquitto(t, "")
	var out, errb bytes.Buffer
	args := []string{"run", "--url", fmt.Sprintf("tcp://127.0.0.1:%d", port), "--pubs", "2", "--subs", "3",
		"--limit", "300", "--qos", "1", "--size", "128", "--protocol", "5", "--json", "--quiet",
		"--client-id", "golden-%i", "--duration", "20s"}
	if err := Main(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	normalize(&s)
	var got bytes.Buffer
	s.WriteJSON(&got)
	golden(t, "run.json", got.Bytes())
}

func TestTextGolden(t *testing.T) {
	s := &Summary{
		Mode: "run", Broker: "tcp://127.0.0.1:1883", Protocol: "3.1.1", QoS: 1, PayloadBytes: 64,
		Clients:  ClientSummary{Target: 11, Connected: 10, Failed: 1, Subscribed: 1},
		ElapsedS: 12.5, PublishS: 10, Published: 100000, Acked: 100000, Received: 99990, Expected: 100000,
		PubRate: 10000, RecvRate: 9999, Streams: 10, Lost: 10, Duplicates: 2, Reordered: 1,
		Latency: LatencySummary{Count: 99990, P50US: 150, P90US: 900, P99US: 1500, P999US: 25000, MaxUS: 1.5e6},
		Errors:  map[string]int64{"connack: 0x87 not authorized": 1},
		CPU:     CPUSummary{UserS: 1.5, SysS: 2.25, NsPerMsg: 18750, MaxRSSKiB: 20480},
	}
	var b bytes.Buffer
	s.WriteText(&b)
	golden(t, "summary.txt", b.Bytes())
}

func TestMainUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Main(context.Background(), nil, &out, &errb); err == nil {
		t.Error("no command: no error")
	}
	if err := Main(context.Background(), []string{"bogus"}, &out, &errb); err == nil {
		t.Error("bogus command: no error")
	}
	for _, bad := range [][]string{
		{"pub", "--qos", "3"},
		{"pub", "--protocol", "4.0"},
		{"run", "--pubs", "0", "--subs", "0"},
		{"conn", "--url", "http://x"},
		{"pub", "extra"},
	} {
		if _, _, err := ParseFlags(bad[0], bad[1:], &errb); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
