package check

import (
	"cmp"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

const dockerfile = "../docker/Dockerfile"

// image is what the Dockerfile's final stage gives a container.
type image struct {
	user       string
	env        map[string]string
	expose     []string
	volumes    []string
	health     []string
	entrypoint []string
	cmd        []string
	copies     map[string]string // destination -> source stage
	// healthTimeout is the HEALTHCHECK's --timeout (0: Docker's 30 s).
	healthTimeout time.Duration
	buildRuns     []string // the build stage's RUN lines
}

// parseDockerfile parses the shipped Dockerfile with BuildKit's parser
// (warnings are errors) and returns its final stage.
func parseDockerfile(t *testing.T) image {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	var lints []string
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, _ []parser.Range) {
		lints = append(lints, rule+": "+msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, l := range lints {
		t.Errorf("Dockerfile lint: %s", l)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
	}
	img := image{env: make(map[string]string), copies: make(map[string]string)}
	for _, st := range stages[:len(stages)-1] {
		for _, c := range st.Commands {
			if r, ok := c.(*instructions.RunCommand); ok {
				img.buildRuns = append(img.buildRuns, strings.Join(r.CmdLine, " "))
			}
		}
	}
	for _, c := range stages[len(stages)-1].Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			img.user = c.User
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				img.env[kv.Key] = kv.Value
			}
		case *instructions.ExposeCommand:
			img.expose = append(img.expose, c.Ports...)
		case *instructions.VolumeCommand:
			img.volumes = append(img.volumes, c.Volumes...)
		case *instructions.HealthCheckCommand:
			img.health = c.Health.Test
			img.healthTimeout = c.Health.Timeout
		case *instructions.EntrypointCommand:
			img.entrypoint = c.CmdLine
		case *instructions.CmdCommand:
			img.cmd = c.CmdLine
		case *instructions.CopyCommand:
			img.copies[c.DestPath] = c.From
		}
	}
	return img
}

// TestDockerfile: a static binary with the version injected, a non-root
// user, the five ports, the data volume, a /readyz health check on the
// admin listener, which must not be loopback; and culex accepts the
// image's environment.
func TestDockerfile(t *testing.T) {
	img := parseDockerfile(t)
	if u, _, _ := strings.Cut(img.user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("runtime USER %q, want a non-root user", img.user)
	}
	if want := []string{"1883", "8883", "8083", "8084", "18083"}; !slices.Equal(slices.Sorted(slices.Values(img.expose)), slices.Sorted(slices.Values(want))) {
		t.Errorf("EXPOSE %v, want %v", img.expose, want)
	}
	build := strings.Join(img.buildRuns, "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-X main.version=", "./cmd/culex"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage does not run %q", want)
		}
	}
	if len(img.entrypoint) == 0 || img.copies[img.entrypoint[0]] == "" {
		t.Errorf("ENTRYPOINT %v is not the binary copied from the build stage (%v)", img.entrypoint, img.copies)
	}
	if !slices.Equal(img.cmd, []string{"serve"}) {
		t.Errorf("CMD %v, want [serve]", img.cmd)
	}
	cfg := effectiveConfig(t, "the image's environment", "", img.env)
	if dir := getString(cfg, "data_dir"); !slices.Contains(img.volumes, dir) {
		t.Errorf("data_dir %q is not a VOLUME (%v)", dir, img.volumes)
	}
	admin := getString(cfg, "admin.listen")
	if admin == "" || strings.HasPrefix(admin, "127.") || strings.HasPrefix(admin, "localhost") {
		t.Errorf("admin.listen %q in the image: published ports and probes cannot reach it", admin)
	}
	for scheme, port := range listenerPorts(t, cfg) {
		if !slices.Contains(img.expose, strconv.Itoa(port)) {
			t.Errorf("the default %s listener's port %d is not exposed", scheme, port)
		}
	}
	if len(img.health) < 3 || img.health[0] != "CMD" || img.health[1] != img.entrypoint[0] || img.health[2] != "probe" {
		t.Errorf("HEALTHCHECK %v, want the culex binary probing", img.health)
	}
}

// TestDockerfileHealthcheck runs the image's HEALTHCHECK command with the
// image's environment against a stand-in admin listener: it follows
// CULEX_ADMIN_LISTEN to whatever address the node's admin listener has
// (not a fixed 127.0.0.1:18083), asks /readyz?scope=node (the node's own
// checks, not Kafka's), and its timeout is above the time a readiness
// answer may take.
func TestDockerfileHealthcheck(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	img := parseDockerfile(t)
	if len(img.health) < 3 || img.health[0] != "CMD" {
		t.Fatalf("HEALTHCHECK %v, want CMD culex probe ...", img.health)
	}
	if timeout := cmp.Or(img.healthTimeout, 30*time.Second); timeout <= readyzBound {
		t.Errorf("HEALTHCHECK --timeout %v is not above the %v a /readyz answer may take", img.healthTimeout, readyzBound)
	}
	asked := make(chan string, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- r.URL.RequestURI():
		default:
		}
	}))
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	env := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range img.env {
		env = append(env, k+"="+v)
	}
	// The operator moved the admin listener (published elsewhere, or two
	// nodes sharing a host network).
	env = append(env, "CULEX_ADMIN_LISTEN=0.0.0.0:"+port)
	cmd := exec.Command(culexBin, img.health[2:]...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("HEALTHCHECK %v with CULEX_ADMIN_LISTEN=0.0.0.0:%s: %v\n%s", img.health, port, err, out)
	}
	select {
	case got := <-asked:
		if got != "/readyz?scope=node" {
			t.Errorf("HEALTHCHECK asked %s, want /readyz?scope=node", got)
		}
	default:
		t.Errorf("HEALTHCHECK passed without asking the admin listener")
	}
}
