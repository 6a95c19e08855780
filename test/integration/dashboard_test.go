package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/brokertest"
)

// screenshots, when set, is the directory TestDashboardInBrowser saves PNG
// screenshots of the main pages into (docs/img holds the ones
// docs/dashboard.md shows):
//
//	go test ./test/integration -run TestDashboardInBrowser -args -screenshots ../../docs/img
var screenshots = flag.String("screenshots", "", "directory for the dashboard screenshots (docs/img)")

// adminURLRE matches serve's admin listener log line.
var adminURLRE = regexp.MustCompile(`msg="admin listening" url=(http://\S+)`)

// TestDashboardInBrowser drives the embedded dashboard of a real `culex
// serve` in headless Chromium: the first login with admin/public is forced
// to change the password; the operator finds the client a real
// mosquitto_sub holds, kicks it, and mosquitto_sub sees the DISCONNECT
// (0x98, administrative action) and exits. Then every page and tab is
// opened; each must show its data, with no JavaScript error, no console
// error and no failed request.
func TestDashboardInBrowser(t *testing.T) {
	chromium := brokertest.Tool(t, "chromium", "chromium")
	dir := t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, "telemetry", "device-commands"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	p := startCulex(t, filepath.Join(dir, "data"), "--config", dashboardConfig(t, dir, kc.ListenAddrs()[0]))
	base := adminURL(t, p) + "/"

	kicked := startHeldSub(t, p.addr, "dash-dev-a", "dev-a")
	stays := startHeldSub(t, p.addr, "dash-dev-b", "dev-b")
	if out, err := mosquittoRun(t, p.addr, "mosquitto_pub", "-u", "dev-a", "-P", "secret-dev-a", "-i", "dash-pub",
		"-t", "devices/dev-a/status", "-m", `{"online":true}`, "-r", "-q", "1"); err != nil {
		t.Fatalf("mosquitto_pub retained: %v\n%s", err, out)
	}
	if *screenshots != "" {
		dashboardTraffic(t, p.addr)
	}

	b := newBrowser(t, chromium)
	b.do("the login page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.shot("login")
	b.login("admin", "public")
	b.do("the forced password change", chromedp.WaitVisible(chromedp.CSS("#pw-form")))
	b.shot("password-change")
	const newPassword = "dashboard-pw-1"
	b.do("changing the password",
		chromedp.SendKeys(chromedp.CSS("#pw-new"), newPassword),
		chromedp.SendKeys(chromedp.CSS("#pw-confirm"), newPassword),
		chromedp.Click(chromedp.CSS("#pw-submit")),
		b.loaded("overview"))
	b.signedIn()
	if got := apiLogin(t, base, "admin", "public"); got != http.StatusUnauthorized {
		t.Errorf("login with admin/public after the change: HTTP %d, want 401", got)
	}
	if got := apiLogin(t, base, "admin", newPassword); got != http.StatusOK {
		t.Errorf("login with the new password: HTTP %d, want 200", got)
	}
	// The charts draw once two samples of the counters gave a rate.
	b.do("the overview's charts", chromedp.WaitVisible(chromedp.CSS(".chart path.series")))
	if *screenshots != "" { // some history makes a better picture
		b.doFor("charts with history", 2*time.Minute, chromedp.Poll[chromedp.Void](
			`(document.querySelector(".chart path.series")?.getAttribute("d") || "").split("L").length > 15`,
			chromedp.WithPollingInterval(time.Second), chromedp.WithPollingTimeout(0)))
		b.shot("overview")
	}

	// Find the client mosquitto_sub holds, and kick it.
	kick := chromedp.CSS(`button.kick[data-client="dash-dev-a"]`)
	b.do("finding dash-dev-a on the clients page", chromedp.Navigate(base+"#/clients"), b.loaded("clients"),
		chromedp.SendKeys(chromedp.CSS("#clients-client_id"), "dash-dev-a"),
		chromedp.WaitVisible(kick),
		chromedp.WaitNotPresent(chromedp.CSS(`button.kick[data-client="dash-dev-b"]`)))
	b.do("kicking dash-dev-a", chromedp.Click(kick),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[value="yes"]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button[value="yes"]`)))
	select {
	case err := <-kicked.done:
		if out := kicked.out.String(); !strings.Contains(out, "DISCONNECT (152)") {
			t.Errorf("mosquitto_sub exited (%v) without DISCONNECT 0x98 (152, administrative action):\n%s", err, out)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("mosquitto_sub still connected %v after the kick:\n%s", waitTimeout, kicked.out.String())
	}
	b.do("the kicked client's session leaving the list", chromedp.WaitVisible(chromedp.CSS("#clients td.empty")))

	// Every page and tab, each with something it must show; docs/img has
	// a screenshot of the main ones.
	for _, pg := range []struct {
		route, want string
		shot        bool
	}{
		{"overview", "Messages per second", false}, // shot above, with history
		{"clients", "dash-dev-b", true},
		{"clients/dash-dev-b", "devices/dev-b/#", true},
		{"subscriptions", "devices/dev-b/#", true},
		{"subscriptions/topics", "devices/dev-b/#", false},
		{"retained", "devices/dev-a/status", true},
		{"kafka", "devices/+/telemetry", true},
		{"security", "dev-b", true},
		{"security/acl", "devices/${username}/#", true},
		{"security/bans", "Nobody is banned", false},
		{"cluster", "running", true},
		{"settings", "admin", true},
		{"settings/api-keys", "No API keys yet", false},
		{"settings/password", "Change password", false},
		{"settings/config", "users_file", false},
	} {
		b.do("page "+pg.route, chromedp.Navigate(base+"#/"+pg.route), b.loaded(pg.route), b.shows(pg.route, pg.want))
		if *screenshots != "" && pg.shot {
			// Rates need two samples; toasts fade.
			b.do("page "+pg.route+" settling", chromedp.WaitNotPresent(chromedp.CSS(".toast")),
				chromedp.Poll[chromedp.Void](`!document.querySelector(".chart") || document.querySelector(".chart path.series")`,
					chromedp.WithPollingInterval(100*time.Millisecond)))
			b.shot(strings.ReplaceAll(pg.route, "/", "-"))
		}
	}

	// An admin adds a viewer; the viewer sees the clients but no kick
	// button, and no account or API key settings.
	b.do("adding a viewer", chromedp.Navigate(base+"#/settings"), b.loaded("settings"),
		chromedp.Click(chromedp.CSS("#account-add")),
		chromedp.SendKeys(chromedp.CSS(`dialog[open] input[name="username"]`), "watcher"),
		chromedp.SendKeys(chromedp.CSS(`dialog[open] input[name="password"]`), "watcher-pw-1"),
		chromedp.SetValue(chromedp.CSS(`dialog[open] select[name="role"]`), "viewer"),
		chromedp.Click(chromedp.CSS(`dialog[open] button[value="ok"]`)),
		b.shows("settings", "watcher"))
	b.do("logging out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	b.login("watcher", "watcher-pw-1")
	// The login returns to the page shown before (settings).
	b.do("the viewer's settings", b.loaded("settings"), b.shows("settings", "Change password"),
		chromedp.WaitNotPresent(chromedp.CSS("#tab-accounts")))
	b.do("the viewer's clients page", chromedp.Navigate(base+"#/clients"), b.loaded("clients"), b.shows("clients", "dash-dev-b"))
	if n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("button.kick").length`)); err != nil || n != 0 {
		t.Errorf("a viewer's clients page has %d kick buttons (%v), want none", n, err)
	}

	select {
	case err := <-stays.done:
		t.Errorf("dash-dev-b, never kicked, exited: %v\n%s", err, stays.out.String())
	default:
	}
}

// dashboardConfig writes the node's config: devices dev-a, dev-b and ops
// (superuser) from a users file with the ACL of ownedFiles, the admin
// listener on a free loopback port, and a Kafka route and command route.
func dashboardConfig(t *testing.T, dir, brokers string) string {
	t.Helper()
	usersFile, aclFile := ownedFiles(t, dir)
	f := filepath.Join(dir, "culex.yaml")
	cfg := fmt.Sprintf(`auth:
  allow_anonymous: false
  users_file: %q
  acl_file: %q
  acl_default: deny
  watch_interval: 0s
admin:
  listen: 127.0.0.1:0
kafka:
  brokers: %q
  produce_timeout: 5s
  routes:
    - {name: telemetry, filter: devices/+/telemetry, topic: telemetry, ack: kafka}
  commands:
    - {name: commands, topics: device-commands, mqtt_topic: "devices/${key}/commands", qos: 1}
`, usersFile, aclFile, brokers)
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// dashboardTraffic, for the screenshots, connects a few devices and
// publishes telemetry until the test ends.
func dashboardTraffic(t *testing.T, addr string) {
	t.Helper()
	ops := func(o *mqtt.ClientOptions) { o.SetUsername("ops").SetPassword("secret-ops") }
	for i := range 4 {
		c := connectV3(t, "tcp://"+addr, fmt.Sprintf("sensor-%02d", i+1), true, ops)
		c.subscribe(fmt.Sprintf("devices/sensor-%02d/#", i+1), 1)
	}
	pub := connectV3(t, "tcp://"+addr, "gateway-01", true, ops)
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		<-done
	})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				pub.Publish(fmt.Sprintf("devices/sensor-%02d/telemetry", i%4+1), 1, false, fmt.Sprintf(`{"t":%d}`, i))
			}
		}
	}()
}

// adminURL waits for serve's admin listener line and returns its URL.
func adminURL(t *testing.T, p *culexProc) string {
	t.Helper()
	var url string
	waitFor(t, waitTimeout, "the admin listener's log line", func() bool {
		if m := adminURLRE.FindStringSubmatch(p.stderr.String()); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return url
}

// apiLogin posts a dashboard login and returns the HTTP status.
func apiLogin(t *testing.T, base, user, password string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	res, err := http.Post(base+"api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// heldSub is a mosquitto_sub (MQTT 5) that stays connected until the broker
// disconnects it; done receives its exit.
type heldSub struct {
	out  *lockedBuffer
	done chan error
}

func startHeldSub(t *testing.T, addr, id, user string) *heldSub {
	t.Helper()
	stdbuf := brokertest.Tool(t, "stdbuf", "coreutils")
	bin := brokertest.Tool(t, "mosquitto_sub", "mosquitto-clients")
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, stdbuf, "-oL", bin, "-h", host, "-p", port, "-V", "5", "-d",
		"-i", id, "-u", user, "-P", "secret-"+user, "-t", "devices/"+user+"/#")
	s := &heldSub{out: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto_sub: %v", err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mosquitto_sub %s output:\n%s", id, s.out.String())
		}
	})
	waitFor(t, waitTimeout, "mosquitto_sub "+id+"'s SUBACK", func() bool { return strings.Contains(s.out.String(), "received SUBACK") })
	return s
}

// browser is a headless Chromium tab that records what would show as an
// error in the developer tools: uncaught exceptions, console errors, browser
// log errors (such as CSP violations) and failed HTTP requests.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu         sync.Mutex
	problems   []string
	methods    map[network.RequestID]string
	afterLogin bool // from then on a 401 is a failure too
}

func newBrowser(t *testing.T, chromium string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1366, 860))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &browser{t: t, ctx: ctx, methods: map[network.RequestID]string{}}
	// The first Run starts the browser and lives as long as ctx: no
	// deadline on it (each step below has its own).
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return b
}

// record runs on chromedp's reader goroutine: it only appends.
func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.problems = append(b.problems, fmt.Sprintf("uncaught exception: %s (%s:%d)", msg, d.URL, d.LineNumber))
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.problems = append(b.problems, "console error: "+strings.Join(parts, " "))
		}
	case *log.EventEntryAdded:
		// Failed requests are judged below by their status.
		if ev.Entry.Level == log.EntryLevelError && ev.Entry.Source != log.EntrySourceNetwork {
			b.problems = append(b.problems, fmt.Sprintf("browser log error (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case *network.EventRequestWillBeSent:
		b.methods[ev.RequestID] = ev.Request.Method
	case *network.EventResponseReceived:
		r := ev.Response
		// Before the login, the dashboard asks GET /api/v1/me whether a
		// session exists: 401 is the answer it expects then.
		expected := !b.afterLogin && r.Status == 401 && strings.HasSuffix(r.URL, "/api/v1/me") && b.methods[ev.RequestID] == "GET"
		if r.Status >= 400 && !expected {
			b.problems = append(b.problems, fmt.Sprintf("HTTP %d for %s %s", r.Status, b.methods[ev.RequestID], r.URL))
		}
	case *network.EventLoadingFailed:
		if !ev.Canceled {
			b.problems = append(b.problems, fmt.Sprintf("request failed: %s %s", b.methods[ev.RequestID], ev.ErrorText))
		}
	}
}

func (b *browser) signedIn() {
	b.mu.Lock()
	b.afterLogin = true
	b.mu.Unlock()
}

// login fills the login form and submits it.
func (b *browser) login(user, password string) {
	b.t.Helper()
	b.do("logging in as "+user,
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#login-username"), user),
		chromedp.SendKeys(chromedp.CSS("#login-password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")))
}

// do runs the steps with a deadline, then fails the test on a step error or
// on anything recorded as a problem so far.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.doFor(what, 2*waitTimeout, steps...)
}

// doFor is do with the deadline d.
func (b *browser) doFor(what string, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	err := chromedp.Do(ctx, steps...)
	b.mu.Lock()
	problems := append([]string(nil), b.problems...)
	b.mu.Unlock()
	if err != nil || len(problems) > 0 {
		b.t.Fatalf("%s: %v\nproblems in the browser:\n  %s\npage text:\n%s", what, err, strings.Join(problems, "\n  "), b.text())
	}
}

// text is the page's visible text, for failure messages.
func (b *browser) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// loaded waits until the router shows route and the page has rendered its
// first data (app.js sets data-loaded), with no page error shown.
func (b *browser) loaded(route string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#content[data-route=%q][data-loaded]`, route))),
		chromedp.WaitNotPresent(chromedp.CSS(`#content .page-error`)))
}

// shows waits until the content area of route holds text.
func (b *browser) shows(route, text string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.Search(fmt.Sprintf(`//main[@id="content"][@data-route=%q]//*[contains(text(), %q)]`, route, text)))
}

// shot saves a screenshot of the viewport as <name>.png when -screenshots
// is set.
func (b *browser) shot(name string) {
	b.t.Helper()
	if *screenshots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
