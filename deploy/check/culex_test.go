package check

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// repoRoot is the Culex repository this module sits in.
const repoRoot = "../.."

// culexBin is the linux binary of this machine's architecture that
// scripts/release.sh built in TestMain (releaseDir holds the release), so
// that the deployment files are checked against the config loader and
// flags of the very binary they deploy.
var (
	culexBin   string
	releaseDir string
	buildErr   error
)

// releaseVersion is the VERSION TestMain gives scripts/release.sh.
const releaseVersion = "v0.0.0-check"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "culex-deploy-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	releaseDir = dir
	culexBin, buildErr = runRelease(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runRelease runs scripts/release.sh into dir and returns the binary for this
// machine.
func runRelease(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./scripts/release.sh")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "DIST="+dir, "VERSION="+releaseVersion, "COMMIT=test")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/release.sh: %w\n%s", err, out)
	}
	bin := filepath.Join(dir, fmt.Sprintf("culex-%s-linux-%s", releaseVersion, runtime.GOARCH))
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("scripts/release.sh built no binary for this machine: %w", err)
	}
	return bin, nil
}

// effectiveConfig runs `culex config check --print` on the config file
// text with exactly the CULEX_* variables in env (as a container gets
// them) and returns the configuration culex serve would run with. It fails
// the test, with culex's error naming the key, when culex refuses it.
func effectiveConfig(t *testing.T, what, file string, env map[string]string) map[string]any {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("culex binary unavailable: %v", buildErr)
	}
	args := []string{"config", "check", "--print"}
	if file != "" {
		path := filepath.Join(t.TempDir(), "culex.yaml")
		if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, path)
	}
	cmd := exec.Command(culexBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		if k == "CULEX_CONFIG" {
			continue // the file is given as an argument: its path differs here
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: culex refuses the config: %v\n%s\nconfig file:\n%s", what, err, stderr.String(), file)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(stdout.Bytes(), &cfg); err != nil {
		t.Fatalf("%s: culex config check --print: %v", what, err)
	}
	return cfg
}

// get returns the value at a dotted path of a decoded config ("" when absent).
func get(cfg map[string]any, path string) any {
	var cur any = cfg
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

func getString(cfg map[string]any, path string) string {
	v := get(cfg, path)
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// listenerPorts maps each listener's scheme (tcp, ssl, ws, wss) to its port.
func listenerPorts(t *testing.T, cfg map[string]any) map[string]int {
	t.Helper()
	out := make(map[string]int)
	ls, _ := cfg["listeners"].([]any)
	for _, l := range ls {
		u := getString(l.(map[string]any), "url")
		scheme, rest, _ := strings.Cut(u, "://")
		hostport, _, _ := strings.Cut(rest, "/")
		out[scheme] = portOf(t, hostport)
	}
	return out
}

// portOf returns the port of host:port.
func portOf(t *testing.T, hostport string) int {
	t.Helper()
	i := strings.LastIndex(hostport, ":")
	var p int
	if _, err := fmt.Sscanf(hostport[i+1:], "%d", &p); i < 0 || err != nil {
		t.Fatalf("%q is not host:port", hostport)
	}
	return p
}

// schemePort are the container port names of the listener schemes.
var schemePort = map[string]string{"tcp": "mqtt", "ssl": "mqtts", "ws": "ws", "wss": "wss"}

// filePaths returns every file path the config names (certificates, keys,
// CAs), by key.
func filePaths(cfg map[string]any) map[string]string {
	out := make(map[string]string)
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", prefix, i), x)
			}
		case string:
			if v != "" && strings.HasSuffix(prefix, "_file") {
				out[prefix] = v
			}
		}
	}
	walk("", cfg)
	return out
}
