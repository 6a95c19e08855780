package check

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "../compose/compose.yaml"

// composeEnv is the environment the Compose file requires (the .env
// docs/deploy.md has the user write).
var composeEnv = []string{"CULEX_CLUSTER_SECRET=compose-test-cluster-secret", "CULEX_ADMIN_PASSWORD=compose-test-pw"}

// loadCompose loads the Compose file with compose-spec's own loader, as
// `docker compose` does (interpolation, anchors, consistency checks), with
// only composeEnv in the environment so that the file's defaults apply.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadComposeEnv(t, composeEnv)
	if err != nil {
		t.Fatalf("compose: %v", err)
	}
	return p
}

// loadComposeEnv loads the Compose file with env as the environment.
func loadComposeEnv(t *testing.T, env []string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile}, cli.WithEnv(env), cli.WithName("culex"),
		cli.WithConsistency(true), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// TestComposeSecretsRequired: the cluster secret and the admin password
// have no defaults (a default cluster secret is public, a default admin
// password skips the forced change): without them in the environment or
// .env, Compose refuses to start, naming the variable; with them, every
// node gets them.
func TestComposeSecretsRequired(t *testing.T) {
	for i, name := range []string{"CULEX_CLUSTER_SECRET", "CULEX_ADMIN_PASSWORD"} {
		env := slices.Clone(composeEnv)
		env = slices.Delete(env, i, i+1)
		if _, err := loadComposeEnv(t, env); err == nil || !strings.Contains(err.Error(), "set "+name) {
			t.Errorf("compose without %s: %v, want an error naming it", name, err)
		}
	}
	p := loadCompose(t)
	for _, name := range []string{"culex1", "culex2", "culex3"} {
		envOf := p.Services[name].Environment
		for _, kv := range composeEnv {
			k, v, _ := strings.Cut(kv, "=")
			if envOf[k] == nil || *envOf[k] != v {
				t.Errorf("%s: %s is %v, want the environment's %q", name, k, envOf[k], v)
			}
		}
	}
}

// TestComposeHAProxyStats: the stats page HAProxy serves is published on
// the host's loopback, and haproxy.cfg binds it on every interface of the
// container (its 127.0.0.1 is the container's own, which a published port
// never reaches).
func TestComposeHAProxyStats(t *testing.T) {
	p := loadCompose(t)
	published := false
	for _, port := range p.Services["haproxy"].Ports {
		if port.Target == 8404 {
			published = true
			if port.HostIP != "127.0.0.1" {
				t.Errorf("HAProxy's stats port is published on %q, want the host's 127.0.0.1 only", port.HostIP)
			}
		}
	}
	if !published {
		t.Fatalf("HAProxy's stats port 8404 is not published")
	}
	b, err := os.ReadFile("../haproxy/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	frontend, bind := "", ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) < 2 || strings.HasPrefix(f[0], "#"):
		case f[0] == "frontend":
			frontend = f[1]
		case f[0] == "bind" && frontend == "stats":
			bind = f[1]
		}
	}
	if host, port, _ := strings.Cut(bind, ":"); port != "8404" || host != "" && host != "0.0.0.0" && host != "[::]" {
		t.Errorf("HAProxy's stats frontend binds %q, want :8404 (every interface of the container)", bind)
	}
}

// TestCompose: three culex nodes built from the shipped Dockerfile whose
// configs culex accepts, peering with each other on the cluster port;
// HAProxy running the shipped haproxy.cfg against them and trusted by
// them for PROXY headers; Kafka topics created for every route; the
// simulator publishing through HAProxy.
func TestCompose(t *testing.T) {
	p := loadCompose(t)
	img := parseDockerfile(t)
	hp, ok := p.Services["haproxy"]
	if !ok {
		t.Fatal("no haproxy service")
	}
	haproxyIP := hp.Networks["culex"].Ipv4Address

	var nodes []string
	for name, s := range p.Services {
		if s.Build != nil && s.Image == "culex:local" && len(s.Command) == 0 {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 3 {
		t.Fatalf("culex nodes %v, want 3", nodes)
	}
	hcfg := readHAProxyServers(t, p)
	topics := createdTopics(t, p)
	names := map[string]bool{}
	for _, name := range nodes {
		s := p.Services[name]
		if df := filepath.Join(s.Build.Context, s.Build.Dockerfile); !sameFile(t, df, dockerfile) {
			t.Errorf("%s builds %s, want the shipped Dockerfile", name, df)
		}
		env := maps.Clone(img.env)
		for k, v := range s.Environment {
			env[k] = *v
		}
		file := ""
		for _, c := range s.Configs {
			if c.Target == env["CULEX_CONFIG"] {
				b, err := os.ReadFile(p.Configs[c.Source].File)
				if err != nil {
					t.Fatal(err)
				}
				file = string(b)
			}
		}
		if file == "" {
			t.Fatalf("%s: CULEX_CONFIG %q is not a mounted config", name, env["CULEX_CONFIG"])
		}
		cfg := effectiveConfig(t, name, file, env)
		node := getString(cfg, "cluster.node_name")
		if names[node] || node == "" {
			t.Errorf("%s: cluster.node_name %q is not unique", name, node)
		}
		names[node] = true
		clusterPort := portOf(t, getString(cfg, "cluster.listen"))
		var peers []string
		for _, peer := range get(cfg, "cluster.peers").([]any) {
			peers = append(peers, peer.(string))
		}
		var want []string
		for _, n := range nodes {
			if n != name {
				want = append(want, fmt.Sprintf("%s:%d", n, clusterPort))
			}
		}
		if !slices.Equal(peers, want) {
			t.Errorf("%s: cluster.peers %v, want the other nodes' cluster ports %v", name, peers, want)
		}
		if dir := getString(cfg, "data_dir"); !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == dir }) {
			t.Errorf("%s: data_dir %s is not on a volume", name, dir)
		}
		ports := listenerPorts(t, cfg)
		for _, l := range get(cfg, "listeners").([]any) {
			l := l.(map[string]any)
			trusted, _ := l["trusted_proxies"].([]any)
			if l["proxy_protocol"] != true || !slices.Contains(trusted, any(haproxyIP)) {
				t.Errorf("%s: listener %v does not take PROXY headers from HAProxy (%s)", name, l["url"], haproxyIP)
			}
		}
		srv := hcfg[name]
		if srv.mqtt != ports["tcp"] || srv.check != portOf(t, getString(cfg, "admin.listen")) {
			t.Errorf("%s: HAProxy sends MQTT to %d and checks %d; the node listens on %d, admin on %s",
				name, srv.mqtt, srv.check, ports["tcp"], getString(cfg, "admin.listen"))
		}
		host, port, _ := strings.Cut(getString(cfg, "kafka.brokers"), ":")
		if _, ok := p.Services[host]; !ok || !strings.Contains(kafkaListeners(p), ":"+port) {
			t.Errorf("%s: kafka.brokers %s is not the kafka service's listener", name, getString(cfg, "kafka.brokers"))
		}
		for _, r := range get(cfg, "kafka.routes").([]any) {
			if topic := r.(map[string]any)["topic"].(string); !topics[topic] {
				t.Errorf("%s: route topic %s is not created by kafka-init (%v)", name, topic, topics)
			}
		}
		for _, c := range get(cfg, "kafka.commands").([]any) {
			for _, topic := range strings.Split(c.(map[string]any)["topics"].(string), ",") {
				if !topics[strings.TrimSpace(topic)] {
					t.Errorf("%s: command topic %s is not created by kafka-init (%v)", name, topic, topics)
				}
			}
		}
		if dep, ok := s.DependsOn["kafka-init"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s does not wait for the topics (depends_on kafka-init: service_completed_successfully)", name)
		}
	}
	for _, name := range nodes[1:] {
		if len(p.Services[name].Ports) > 0 {
			t.Errorf("%s publishes ports %v: devices go through HAProxy", name, p.Services[name].Ports)
		}
	}
	published := map[uint32]bool{}
	for _, port := range hp.Ports {
		published[port.Target] = true
	}
	if !published[1883] {
		t.Errorf("HAProxy does not publish 1883")
	}

	sim := p.Services["simulator"]
	cmd := strings.Join(sim.Command, " ")
	if sim.Image != "culex:local" || !strings.HasPrefix(cmd, "bench pub ") || !strings.Contains(cmd, "--url=tcp://haproxy:1883") {
		t.Errorf("simulator runs %s %q, want culex bench pub through haproxy:1883", sim.Image, cmd)
	}
	// Every flag is one culex bench knows: flags are parsed in order, so an
	// unknown one fails before the final -h.
	out, _ := exec.Command(culexBin, append(slices.Clone(sim.Command), "-h")...).CombinedOutput()
	if strings.Contains(string(out), "not defined") || strings.Contains(string(out), "invalid") {
		t.Errorf("culex %s: %s", cmd, firstLine(string(out)))
	}
	topicRE := regexp.MustCompile(`--topic=(\S+)`)
	if m := topicRE.FindStringSubmatch(cmd); m == nil || !matchesRoute(t, p, m[1]) {
		t.Errorf("the simulator's topic %v matches no Kafka route", m)
	}
}

// haproxyServer is where HAProxy sends a node's MQTT and health checks.
type haproxyServer struct{ mqtt, check int }

// readHAProxyServers reads the haproxy.cfg the haproxy service mounts and
// returns the culex_mqtt backend's servers by name, checking that it is
// the shipped file.
func readHAProxyServers(t *testing.T, p *types.Project) map[string]haproxyServer {
	t.Helper()
	var cfgPath string
	for _, v := range p.Services["haproxy"].Volumes {
		if v.Target == "/usr/local/etc/haproxy/haproxy.cfg" {
			cfgPath = v.Source
		}
	}
	if !sameFile(t, cfgPath, "../haproxy/haproxy.cfg") {
		t.Fatalf("haproxy mounts %q, want the shipped deploy/haproxy/haproxy.cfg", cfgPath)
	}
	f, err := os.Open(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[string]haproxyServer)
	check := 0
	backend := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		case fields[0] == "backend":
			backend = fields[1]
		case fields[0] == "default-server":
			if i := slices.Index(fields, "port"); i > 0 {
				check, _ = strconv.Atoi(fields[i+1])
			}
		case fields[0] == "server" && backend == "culex_mqtt":
			host, port, _ := strings.Cut(fields[2], ":")
			n, _ := strconv.Atoi(port)
			out[host] = haproxyServer{mqtt: n, check: check}
		}
	}
	return out
}

// createdTopics returns the topics kafka-init's command creates.
func createdTopics(t *testing.T, p *types.Project) map[string]bool {
	init, ok := p.Services["kafka-init"]
	if !ok {
		t.Fatal("no kafka-init service")
	}
	script := strings.Join(init.Command, " ")
	out := map[string]bool{}
	if m := regexp.MustCompile(`for topic in ([^;]+);`).FindStringSubmatch(script); m != nil && strings.Contains(script, `--topic "$topic"`) {
		for _, topic := range strings.Fields(m[1]) {
			out[topic] = true
		}
	}
	for _, m := range regexp.MustCompile(`--topic[ =]([\w.-]+)`).FindAllStringSubmatch(script, -1) {
		out[m[1]] = true
	}
	return out
}

func kafkaListeners(p *types.Project) string {
	if v := p.Services["kafka"].Environment["KAFKA_ADVERTISED_LISTENERS"]; v != nil {
		return *v
	}
	return ""
}

// matchesRoute reports whether an MQTT topic (bench's %c template filled
// in) matches a route filter of the Compose nodes' config.
func matchesRoute(t *testing.T, p *types.Project, topic string) bool {
	b, err := os.ReadFile(p.Configs["culex"].File)
	if err != nil {
		t.Fatal(err)
	}
	topic = strings.NewReplacer("%c", "device-1", "%i", "1").Replace(topic)
	for _, m := range regexp.MustCompile(`filter: (\S+)`).FindAllStringSubmatch(string(b), -1) {
		if topicMatches(m[1], topic) {
			return true
		}
	}
	return false
}

// topicMatches is MQTT filter matching with + and #.
func topicMatches(filter, topic string) bool {
	f, n := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(n) || l != "+" && l != n[i] {
			return false
		}
	}
	return len(f) == len(n)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func sameFile(t *testing.T, a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
