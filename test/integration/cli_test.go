package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
)

// runCulex runs the culex binary with args and returns its stdout,
// stderr and exit code.
func runCulex(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("culex binary unavailable: %v", buildErr)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(culexBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("culex %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestHelpExitsZero: -h on every command and subcommand prints its usage
// and exits 0, with no error line.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"serve", "-h"}, {"serve", "--help"}, {"bridge", "-h"},
		{"bench", "-h"}, {"bench", "conn", "-h"}, {"bench", "pub", "-h"}, {"bench", "sub", "-h"}, {"bench", "run", "-h"},
		{"users", "-h"}, {"users", "add", "-h"}, {"users", "passwd", "-h"}, {"users", "rm", "-h"}, {"users", "list", "-h"},
		{"version", "-h"}, {"ctl", "-h"}, {"ctl", "clients", "list", "-h"},
	} {
		out, errText, code := runCulex(t, args...)
		if code != 0 || strings.Contains(errText, "culex:") || strings.Contains(errText, "help requested") {
			t.Errorf("culex %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, errText)
		}
		if strings.TrimSpace(out+errText) == "" {
			t.Errorf("culex %s: printed no usage", strings.Join(args, " "))
		}
	}
}

// flagLineRE matches a flag of `culex serve -h`: name, type, default.
var flagLineRE = regexp.MustCompile(`^  --([a-z0-9.-]+) (\S+)  \(default (.*)\)$`)

// TestServeHelpDescribesEveryFlag: `culex serve -h` lists one flag per
// key described in culex.example.yaml, and no other, each with a real
// type name and the example file's description, grouped under headings.
func TestServeHelpDescribesEveryFlag(t *testing.T) {
	out, _, code := runCulex(t, "serve", "-h")
	if code != 0 {
		t.Fatalf("serve -h: exit %d", code)
	}
	desc := config.Descriptions()
	seen := map[string]bool{}
	text := map[string]string{} // flag -> the description printed for it (or its group)
	var pending []string        // flags printed since the last description
	described := false          // the previous line was a description's
	sc := bufio.NewScanner(strings.NewReader(out))
	sections := 0
	for sc.Scan() {
		line := sc.Text()
		if m := flagLineRE.FindStringSubmatch(line); m != nil {
			if described {
				pending, described = nil, false
			}
			if !map[string]bool{"duration": true, "int": true, "string": true, "bool": true, "list": true}[m[2]] {
				t.Errorf("--%s: type %q", m[1], m[2])
			}
			if m[1] != "listen" {
				seen[m[1]] = true
				pending = append(pending, m[1])
			}
			continue
		}
		if strings.HasPrefix(line, "        ") {
			for _, p := range pending {
				text[p] += " " + strings.TrimSpace(line)
			}
			described = true
			continue
		}
		pending, described = nil, false
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			sections++
		}
	}
	if sections < 10 {
		t.Errorf("%d section headings; want flags grouped by section", sections)
	}
	for key, d := range desc {
		flag := strings.ReplaceAll(key, "_", "-")
		if strings.Contains(out, "\n"+key+":\n") || key == "listeners" || strings.HasSuffix(key, "routes") || strings.HasSuffix(key, "commands") {
			continue // a section heading or a list (file only; --listen)
		}
		if !seen[flag] {
			t.Errorf("culex.example.yaml describes %s; serve -h has no --%s", key, flag)
			continue
		}
		if got := strings.Join(strings.Fields(text[flag]), " "); got != d {
			t.Errorf("--%s description:\n got %q\nwant %q (culex.example.yaml)", flag, got, d)
		}
		delete(seen, flag)
	}
	for f := range seen {
		t.Errorf("serve -h lists --%s, which culex.example.yaml does not describe", f)
	}
}

// TestUnknownFlagSuggests: a misspelt flag gets one line naming the
// closest flag, in either spelling (dashes or the key's underscores), and
// the key's own spelling works.
func TestUnknownFlagSuggests(t *testing.T) {
	for _, bad := range []string{"--mqtt.max-conections=5", "--mqtt.max_conections", "-mqtt.max-connection"} {
		out, errText, code := runCulex(t, "serve", bad, "5")
		lines := strings.Split(strings.TrimSpace(errText), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "did you mean --mqtt.max-connections?") || out != "" {
			t.Errorf("serve %s: exit %d, stdout %q, stderr:\n%s", bad, code, out, errText)
		}
	}
	_, errText, code := runCulex(t, "serve", "--mqtt.max_connections", "-1")
	if code == 0 || !strings.Contains(errText, "mqtt.max_connections: \"-1\" is not a whole number") {
		t.Errorf("serve --mqtt.max_connections -1: exit %d, stderr %s", code, errText)
	}
}

// TestVersionFromBuildInfo: `culex version` prints the module version,
// the commit (or "commit unknown" where the build has no VCS stamp) and
// the Go version from the binary's build info.
func TestVersionFromBuildInfo(t *testing.T) {
	out, _, code := runCulex(t, "version")
	if code != 0 || !regexp.MustCompile(`^culex \S+ \(commit [0-9a-f]{12}(\+modified)?(, \S+)?|^culex \S+ \(commit unknown`).MatchString(out) ||
		!strings.Contains(out, "go1.") {
		t.Errorf("culex version: exit %d: %q", code, out)
	}
}

// TestBenchFailsWithoutConnections: a bench run in which no client could
// connect exits non-zero, naming why.
func TestBenchFailsWithoutConnections(t *testing.T) {
	port := brokertest.FreePort(t) // nothing listens there
	_, errText, code := runCulex(t, "bench", "conn", "--url", fmt.Sprintf("tcp://127.0.0.1:%d", port), "-c", "2", "--duration", "1s")
	if code == 0 || !strings.Contains(errText, "no client could connect") || !strings.Contains(errText, "connection refused") {
		t.Errorf("bench against a closed port: exit %d, stderr:\n%s", code, errText)
	}
}

// TestLogFormatJSON: with --log-format json every log line of culex serve
// is a JSON object; the listening line carries the URL.
func TestLogFormatJSON(t *testing.T) {
	if buildErr != nil {
		t.Fatalf("culex binary unavailable: %v", buildErr)
	}
	cmd := exec.Command(culexBin, "serve", "--listen", "tcp://127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(waitTimeout)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("culex exited before listening")
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			if rec["msg"] == "listening" {
				if u, _ := rec["url"].(string); !strings.HasPrefix(u, "tcp://127.0.0.1:") {
					t.Errorf("listening line: %q", line)
				}
				go func() { // drain until exit
					for range lines {
					}
				}()
				return
			}
		case <-deadline:
			t.Fatal("no listening line")
		}
	}
}
