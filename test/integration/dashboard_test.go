package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/cookiejar"
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
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

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
	p, base, kc, stays := startDashboardNode(t)
	kicked := startHeldSub(t, p.addr, "dash-dev-a", "dev-a")
	if *screenshots != "" {
		dashboardTraffic(t, p.addr)
	}
	// Records Kafka refuses after the spool acknowledged them are held: the
	// topic of route events is deleted after its first record went through.
	// (The producer takes a while to give up on them: the browser part
	// runs meanwhile.)
	spoolEvent := func(payload string) {
		t.Helper()
		if out, err := mosquittoRun(t, p.addr, "mosquitto_pub", "-u", "ops", "-P", "secret-ops", "-i", "dash-events",
			"-t", "devices/gw-1/events", "-m", payload, "-q", "1"); err != nil {
			t.Fatalf("mosquitto_pub event: %v\n%s", err, out)
		}
	}
	spoolEvent("first")
	kafkaRecords(t, kc, "events", 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if res, err := kadm.NewClient(kfakeClient(t, kc)).DeleteTopics(ctx, "events"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic events: %v %v", err, res.Error())
	}
	spoolEvent("held-1")
	spoolEvent("held-2")

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
	for _, pg := range dashboardPages {
		b.do("page "+pg.route, chromedp.Navigate(base+"#/"+pg.route), b.loaded(pg.route), b.shows(pg.route, pg.want))
		if *screenshots != "" && pg.shot {
			// Rates need two samples; toasts fade.
			b.do("page "+pg.route+" settling", chromedp.WaitNotPresent(chromedp.CSS(".toast")),
				chromedp.Poll[chromedp.Void](`!document.querySelector(".chart") || document.querySelector(".chart path.series")`,
					chromedp.WithPollingInterval(100*time.Millisecond)))
			b.shot(strings.ReplaceAll(pg.route, "/", "-"))
		}
	}

	// The admin's other actions, each through its dialog, each seen done.
	yes := chromedp.CSS(`dialog[open] button[value="yes"]`)
	ok := chromedp.CSS(`dialog[open] button[value="ok"]`)
	field := func(name string) chromedp.CSS { return chromedp.CSS(fmt.Sprintf(`dialog[open] [name=%q]`, name)) }
	b.do("clearing the retained message", chromedp.Navigate(base+"#/retained"), b.loaded("retained"),
		chromedp.Click(chromedp.CSS("#retained button.danger")), chromedp.WaitVisible(yes), chromedp.Click(yes),
		chromedp.WaitVisible(chromedp.CSS("#retained td.empty")))
	b.do("adding and removing a device user", chromedp.Navigate(base+"#/security/users"), b.loaded("security/users"),
		chromedp.Click(chromedp.CSS("#user-add")),
		chromedp.SendKeys(field("username"), "dev-new"), chromedp.SendKeys(field("password"), "secret-dev-new"),
		chromedp.Click(ok), b.shows("security/users", "dev-new"),
		chromedp.Click(chromedp.Search(`//*[@id="users-table"]//tr[td/strong[text()="dev-new"]]//button[text()="Remove"]`)),
		chromedp.WaitVisible(yes), chromedp.Click(yes),
		chromedp.WaitNotPresent(chromedp.Search(`//*[@id="users-table"]//strong[text()="dev-new"]`)))
	b.do("reloading the ACL", chromedp.Navigate(base+"#/security/acl"), b.loaded("security/acl"),
		chromedp.Click(chromedp.CSS("#acl-reload")),
		chromedp.WaitVisible(chromedp.Search(`//div[@class="toast"][text()="Users and ACL files reloaded"]`)))
	b.do("banning and lifting", chromedp.Navigate(base+"#/security/bans"), b.loaded("security/bans"),
		chromedp.Click(chromedp.CSS("#ban-add")),
		chromedp.SetValue(field("kind"), "username"), chromedp.SendKeys(field("value"), "dev-x"), chromedp.SendKeys(field("reason"), "testing"),
		chromedp.Click(ok), b.shows("security/bans", "testing"),
		chromedp.Click(chromedp.CSS("#bans-table td.actions button")), b.shows("security/bans", "Nobody is banned"))
	b.do("creating and revoking an API key", chromedp.Navigate(base+"#/settings/api-keys"), b.loaded("settings/api-keys"),
		chromedp.Click(chromedp.CSS("#api-key-add")), chromedp.SendKeys(field("name"), "nightly-job"), chromedp.Click(ok),
		chromedp.WaitVisible(chromedp.CSS("#api-key-secret")))
	key, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("#api-key-secret")))
	if err != nil || !strings.Contains(key, ":") {
		t.Fatalf("created API key %q (%v), want ID:SECRET", key, err)
	}
	b.do("the new key in the list", chromedp.Click(chromedp.CSS(`dialog[open] button[type="button"]`)), b.shows("settings/api-keys", "nightly-job"),
		chromedp.Click(chromedp.CSS("#api-keys-table td.actions button")), chromedp.WaitVisible(yes), chromedp.Click(yes),
		b.shows("settings/api-keys", "No API keys yet"))

	// The operator drops the held records; the route counts them failed.
	drop := chromedp.CSS(`button.drop-held[data-topic="events"]`)
	b.doFor("the held records of events", 2*time.Minute, chromedp.Navigate(base+"#/kafka"), b.loaded("kafka"), chromedp.WaitVisible(drop))
	// The held table redraws whenever a record's state changes (waiting,
	// retrying), moving rows under a pointer: press the button itself.
	b.do("dropping them", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(document.querySelector('button.drop-held[data-topic="events"]').click(), true)`)(ctx, tg)
		return err
	}),
		chromedp.WaitVisible(chromedp.CSS(`dialog[open] button[value="yes"]`)),
		chromedp.Click(chromedp.CSS(`dialog[open] button[value="yes"]`)),
		chromedp.WaitVisible(chromedp.Search(`//div[@class="toast"][starts-with(text(), "Dropped ")]`)))
	// A record the spool is retrying at that moment stays (it is held
	// again if Kafka refuses it again); those dropped count as failed.
	dropped, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll(".toast")].map((t) => t.textContent).find((s) => s.startsWith("Dropped ")) || ""`))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	if _, err := fmt.Sscanf(dropped, "Dropped %d held record", &n); err != nil || n < 1 || !strings.HasSuffix(dropped, " of events") {
		t.Fatalf("toast %q: want Dropped N (N >= 1) held records of events", dropped)
	}
	if r := apiSession(t, base, "admin", newPassword).kafkaRoute("events"); r.Failed < n {
		t.Errorf("route events after dropping %d: %+v, want that many failed", n, r)
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

// dashboardPages are the dashboard's pages and tabs with something each must
// show in the tests' setup (dashboardConfig, a mosquitto_sub dash-dev-b, a
// retained devices/dev-a/status); shot marks the main ones docs/img shows.
var dashboardPages = []struct {
	route, want string
	shot        bool
}{
	{"overview", "Messages per second", false}, // shot above, with history
	{"clients", "dash-dev-b", true},
	{"clients/dash-dev-b", "devices/dev-b/#", true},
	{"subscriptions", "devices/dev-b/#", true},
	{"subscriptions/topics", "devices/dev-b/#", false},
	{"retained", "devices/dev-a/status", true},
	{"kafka", "devices/+/events", true},
	{"security", "dev-b", true},
	{"security/acl", "devices/${username}/#", true},
	{"security/bans", "Nobody is banned", false},
	{"cluster", "running", true},
	{"settings", "admin", true},
	{"settings/api-keys", "No API keys yet", false},
	{"settings/password", "Change password", false},
	{"settings/config", "users_file", false},
}

// startDashboardNode starts an in-process Kafka and a `culex serve` with
// dashboardConfig and the extra flags, the mosquitto_sub dash-dev-b and a
// retained message on devices/dev-a/status; it returns the node, the admin
// listener's URL (ending in "/"), the Kafka cluster and the subscriber.
func startDashboardNode(t *testing.T, flags ...string) (*culexProc, string, *kfake.Cluster, *heldSub) {
	t.Helper()
	dir := t.TempDir()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, "telemetry", "events", "device-commands"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	p := startCulex(t, filepath.Join(dir, "data"), append([]string{"--config", dashboardConfig(t, dir, kc.ListenAddrs()[0])}, flags...)...)
	sub := startHeldSub(t, p.addr, "dash-dev-b", "dev-b")
	if out, err := mosquittoRun(t, p.addr, "mosquitto_pub", "-u", "dev-a", "-P", "secret-dev-a", "-i", "dash-pub",
		"-t", "devices/dev-a/status", "-m", `{"online":true}`, "-r", "-q", "1"); err != nil {
		t.Fatalf("mosquitto_pub retained: %v\n%s", err, out)
	}
	return p, adminURL(t, p) + "/", kc, sub
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
    - {name: events, filter: devices/+/events, topic: events, ack: spool}
  spool:
    dir: %q
  commands:
    - {name: commands, topics: device-commands, mqtt_topic: "devices/${key}/commands", qos: 1}
`, usersFile, aclFile, brokers, filepath.Join(dir, "spool"))
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

// adminAPI is an HTTP client logged in to the admin API.
type adminAPI struct {
	t    *testing.T
	base string
	c    *http.Client
}

func apiSession(t *testing.T, base, user, password string) *adminAPI {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &adminAPI{t: t, base: base, c: &http.Client{Jar: jar, Timeout: waitTimeout}}
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	res, err := a.c.Post(base+"api/v1/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("API login as %s: HTTP %d", user, res.StatusCode)
	}
	return a
}

// kafkaRoute returns the counters of one route of GET /api/v1/kafka.
func (a *adminAPI) kafkaRoute(name string) (r struct{ Produced, Failed int64 }) {
	a.t.Helper()
	res, err := a.c.Get(a.base + "api/v1/kafka")
	if err != nil {
		a.t.Fatal(err)
	}
	defer res.Body.Close()
	var k struct {
		Routes []struct {
			Name             string
			Produced, Failed int64
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&k); err != nil {
		a.t.Fatalf("GET /api/v1/kafka: HTTP %d: %v", res.StatusCode, err)
	}
	for _, x := range k.Routes {
		if x.Name == name {
			r.Produced, r.Failed = x.Produced, x.Failed
		}
	}
	return r
}

// kafkaRecords waits until topic holds n records.
func kafkaRecords(t *testing.T, kc *kfake.Cluster, topic string, n int) {
	t.Helper()
	c := kfakeClient(t, kc, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for got := 0; got < n; {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d records in Kafka topic %s within %v", got, n, topic, waitTimeout)
		}
		got += fs.NumRecords()
	}
}

// kfakeClient is a Kafka client of the in-process cluster.
func kfakeClient(t *testing.T, kc *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kc.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
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

	mu       sync.Mutex
	problems []string
	methods  map[network.RequestID]string
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
		if r := ev.Response; r.Status >= 400 {
			b.problems = append(b.problems, fmt.Sprintf("HTTP %d for %s %s", r.Status, b.methods[ev.RequestID], r.URL))
		}
	case *network.EventLoadingFailed:
		if !ev.Canceled {
			b.problems = append(b.problems, fmt.Sprintf("request failed: %s %s", b.methods[ev.RequestID], ev.ErrorText))
		}
	}
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
