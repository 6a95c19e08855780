package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
)

// adminRE matches serve's admin listener log line.
var adminRE = regexp.MustCompile(`msg="admin listening" url=(http://\S+)`)

// adminURL waits for p to log its admin listener's URL.
func (p *culexProc) adminURL() string {
	var u string
	waitFor(p.t, waitTimeout, "the admin listener's log line", func() bool {
		if m := adminRE.FindStringSubmatch(p.stderr.String()); m != nil {
			u = m[1]
		}
		return u != ""
	})
	return u
}

// apiKey logs in to the admin API at base and makes an admin API key.
func apiKey(t *testing.T, base, user, pw string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: waitTimeout}
	post := func(path, csrf string, body any, out any) {
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", csrf)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %s", path, resp.Status)
		}
		json.NewDecoder(resp.Body).Decode(out)
	}
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	post("/api/v1/login", "", map[string]string{"username": user, "password": pw}, &me)
	var key struct{ Key string }
	post("/api/v1/api-keys", me.CSRF, map[string]string{"name": "ctl-test", "role": "admin"}, &key)
	return key.Key
}

// runCtl runs `culex ctl` with the admin URL and key in its environment.
func runCtl(t *testing.T, base, key string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(culexBin, append([]string{"ctl"}, args...)...)
	cmd.Env = append(os.Environ(), "CULEX_ADMIN_URL="+base, "CULEX_API_KEY="+key)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCtlAgainstServe: `culex ctl` against a real `culex serve` started
// with its defaults but ports, finds the client a real mosquitto_sub
// holds, shows it and its subscription, lists and deletes a retained
// message, bans and lifts, reports the node, and kicks the client, whose
// process then ends.
func TestCtlAgainstServe(t *testing.T) {
	t.Parallel()
	if buildErr != nil {
		t.Fatalf("culex binary unavailable: %v", buildErr)
	}
	p := startCulex(t, t.TempDir(), "--admin.listen", "127.0.0.1:0", "--admin.default-password", "ctl-admin-pw")
	base := p.adminURL()
	key := apiKey(t, base, "admin", "ctl-admin-pw")
	host, port, _ := net.SplitHostPort(p.addr)

	sub := exec.Command(brokertest.Tool(t, "mosquitto_sub", "mosquitto-clients"), "-h", host, "-p", port, "-V", "5",
		"-i", "ctl-dev", "-t", "ctl/#", "-q", "1", "-v")
	subOut, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { sub.Wait(); close(exited) }()
	t.Cleanup(func() { sub.Process.Kill(); <-exited })

	var out string
	waitFor(t, waitTimeout, "ctl-dev in culex ctl clients list", func() bool {
		var err error
		out, err = runCtl(t, base, key, "clients", "list", "--connected", "true")
		return err == nil && regexp.MustCompile(`(?m)^ctl-dev\s+-\s+connected\s+127\.0\.0\.1:`).MatchString(out)
	})
	if !strings.HasPrefix(out, "CLIENT ID") {
		t.Errorf("clients list table: %q", out)
	}
	out, err := runCtl(t, base, key, "--json", "clients", "show", "ctl-dev")
	var detail struct {
		ClientID string                   `json:"client_id"`
		Subs     []struct{ Topic string } `json:"subscription_list"`
	}
	if err != nil || json.Unmarshal([]byte(out), &detail) != nil || detail.ClientID != "ctl-dev" {
		t.Fatalf("clients show --json: %v %q", err, out)
	}
	waitFor(t, waitTimeout, "the subscription", func() bool {
		out, err = runCtl(t, base, key, "subscriptions", "--client-id", "ctl-dev")
		return err == nil && strings.Contains(out, "ctl/#")
	})

	pub := brokertest.Tool(t, "mosquitto_pub", "mosquitto-clients")
	if o, err := exec.Command(pub, "-h", host, "-p", port, "-r", "-q", "1", "-t", "ctl/state", "-m", "on").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, o)
	}
	lines := bufio.NewScanner(subOut)
	if !lines.Scan() || lines.Text() != "ctl/state on" {
		t.Fatalf("mosquitto_sub got %q", lines.Text())
	}
	if out, err = runCtl(t, base, key, "retained", "list", "--topic", "ctl/#"); err != nil || !regexp.MustCompile(`(?m)^ctl/state\s+1\s+2\s`).MatchString(out) {
		t.Fatalf("retained list: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "retained", "show", "ctl/state"); err != nil || !strings.Contains(out, "payload: on") {
		t.Fatalf("retained show: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "retained", "delete", "ctl/state"); err != nil {
		t.Fatalf("retained delete: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "retained", "show", "ctl/state"); err == nil || !strings.Contains(out, "not_found") {
		t.Fatalf("retained show after delete: %v %q", err, out)
	}

	if out, err = runCtl(t, base, key, "bans", "add", "client_id", "rogue", "--duration", "1h", "--reason", "test"); err != nil {
		t.Fatalf("bans add: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "bans"); err != nil || !regexp.MustCompile(`(?m)^client_id\s+rogue\s+manual\s`).MatchString(out) {
		t.Fatalf("bans: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "bans", "delete", "client_id", "rogue"); err != nil {
		t.Fatalf("bans delete: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "cluster", "status"); err != nil || !strings.Contains(out, "running") || !strings.Contains(out, "tcp://"+p.addr) {
		t.Fatalf("cluster status: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "routes"); err != nil || !strings.Contains(out, "Kafka bridge is off") {
		t.Fatalf("routes: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "users"); err == nil || !strings.Contains(out, "not_configured") {
		t.Fatalf("users without a users file: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key+"x", "clients", "list"); err == nil || !strings.Contains(out, "unauthorized") {
		t.Fatalf("a wrong key: %v %q", err, out)
	}
	if out, err = runCtl(t, base, key, "clients", "frobnicate"); err == nil || !strings.Contains(out, "unknown command") {
		t.Fatalf("an unknown command: %v %q", err, out)
	}

	if out, err = runCtl(t, base, key, "clients", "kick", "ctl-dev"); err != nil || !strings.Contains(out, "kicked ctl-dev") {
		t.Fatalf("kick: %v %q", err, out)
	}
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		t.Fatal("mosquitto_sub still runs after culex ctl clients kick")
	}
	if out, err = runCtl(t, base, key, "clients", "list", "--client-id", "ctl-dev", "--connected", "true"); err != nil || strings.Contains(out, "ctl-dev") {
		t.Fatalf("after the kick: %v %q", err, out)
	}
}
