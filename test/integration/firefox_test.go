package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
)

// TestDashboardInFirefox opens the dashboard of a real `culex serve` in
// headless Firefox (Debian's firefox-esr, driven over its own Marionette
// protocol): it logs in and opens every page and tab, each of which must
// show its data with no uncaught error, no console error and no error shown
// by the page. TestDashboardInBrowser does the same, and more, in Chromium.
func TestDashboardInFirefox(t *testing.T) {
	firefox := brokertest.Tool(t, "firefox-esr", "firefox-esr")
	_, base, _, _ := startDashboardNode(t, "--admin.default-password", "firefox-pw-1")

	m := startFirefox(t, firefox)
	m.call("WebDriver:Navigate", map[string]any{"url": base})
	m.waitFor("#login-form")
	// From here on, errors are collected in the page (the login page
	// rendering proves the modules loaded).
	m.script(`window.culexTestErrors = [];
		const error = console.error;
		console.error = (...a) => { window.culexTestErrors.push(a.join(" ")); error(...a); };
		addEventListener("error", (e) => window.culexTestErrors.push("uncaught: " + e.message));
		addEventListener("unhandledrejection", (e) => window.culexTestErrors.push("unhandled rejection: " + e.reason));
		addEventListener("securitypolicyviolation", (e) => window.culexTestErrors.push("CSP: " + e.violatedDirective));`)
	m.sendKeys("#login-username", "admin")
	m.sendKeys("#login-password", "firefox-pw-1")
	m.click("#login-submit")
	for _, pg := range dashboardPages {
		m.call("WebDriver:Navigate", map[string]any{"url": base + "#/" + pg.route})
		m.waitFor(fmt.Sprintf(`#content[data-route=%q][data-loaded]`, pg.route))
		m.waitText("#content", pg.want)
		var problems []string
		m.scriptInto(&problems, `return [...window.culexTestErrors,
			...[...document.querySelectorAll("#content .page-error, .toast.error")].map((e) => "shown: " + e.textContent)]`)
		if len(problems) > 0 {
			t.Fatalf("page %s in Firefox:\n  %s", pg.route, strings.Join(problems, "\n  "))
		}
	}
}

// marionette is a session of Firefox's remote protocol: JSON messages
// prefixed by their length, [0, id, command, params] answered by
// [1, id, error, result].
type marionette struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	id   int
}

func startFirefox(t *testing.T, firefox string) *marionette {
	t.Helper()
	profile := t.TempDir()
	// Port 0: Firefox picks a free port and writes it into the profile.
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(`user_pref("marionette.port", 0);`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, firefox, "--headless", "--marionette", "--no-remote", "-profile", profile, "--window-size=1366,860")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("firefox: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("firefox output:\n%s", tail(out.String(), 40))
		}
	})
	var port int
	waitFor(t, 3*waitTimeout, "Firefox's Marionette port", func() bool {
		b, err := os.ReadFile(filepath.Join(profile, "MarionetteActivePort"))
		port, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && port > 0
	})
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	m := &marionette{t: t, conn: conn, r: bufio.NewReader(conn)}
	var hello json.RawMessage
	if err := m.read(&hello); err != nil {
		t.Fatalf("marionette hello: %v", err)
	}
	m.call("WebDriver:NewSession", map[string]any{"capabilities": map[string]any{}})
	return m
}

func (m *marionette) read(v any) error {
	m.conn.SetReadDeadline(time.Now().Add(2 * waitTimeout))
	n, err := m.r.ReadString(':')
	if err != nil {
		return err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
	if err != nil {
		return fmt.Errorf("bad length %q", n)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(m.r, buf); err != nil {
		return err
	}
	return json.Unmarshal(buf, v)
}

// call runs a command and returns its result; an error fails the test.
func (m *marionette) call(command string, params any) json.RawMessage {
	m.t.Helper()
	res, err := m.try(command, params)
	if err != nil {
		m.t.Fatalf("%s: %v", command, err)
	}
	return res
}

func (m *marionette) try(command string, params any) (json.RawMessage, error) {
	m.id++
	msg, err := json.Marshal([]any{0, m.id, command, params})
	if err != nil {
		return nil, err
	}
	m.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := fmt.Fprintf(m.conn, "%d:%s", len(msg), msg); err != nil {
		return nil, err
	}
	var resp []json.RawMessage
	if err := m.read(&resp); err != nil {
		return nil, err
	}
	if len(resp) != 4 {
		return nil, fmt.Errorf("answer %s", resp)
	}
	if string(resp[2]) != "null" {
		return nil, fmt.Errorf("%s", resp[2])
	}
	return resp[3], nil
}

// scriptInto runs a function body in the page and decodes its result.
func (m *marionette) scriptInto(v any, body string) {
	m.t.Helper()
	var res struct{ Value json.RawMessage }
	if err := json.Unmarshal(m.call("WebDriver:ExecuteScript", map[string]any{"script": body, "args": []any{}}), &res); err != nil {
		m.t.Fatal(err)
	}
	if v != nil {
		if err := json.Unmarshal(res.Value, v); err != nil {
			m.t.Fatalf("script result %s: %v", res.Value, err)
		}
	}
}

func (m *marionette) script(body string) { m.t.Helper(); m.scriptInto(nil, body) }

// waitFor polls until an element matches css.
func (m *marionette) waitFor(css string) {
	m.t.Helper()
	m.waitText(css, "")
}

// waitText polls until the element css contains text.
func (m *marionette) waitText(css, text string) {
	m.t.Helper()
	check := fmt.Sprintf(`const e = document.querySelector(%q); return !!e && e.textContent.includes(%q)`, css, text)
	waitFor(m.t, 2*waitTimeout, fmt.Sprintf("%s holding %q in Firefox", css, text), func() bool {
		var ok bool
		m.scriptInto(&ok, check)
		return ok
	})
}

// element finds the element css.
func (m *marionette) element(css string) string {
	m.t.Helper()
	m.waitFor(css)
	var res struct{ Value map[string]string }
	if err := json.Unmarshal(m.call("WebDriver:FindElement", map[string]any{"using": "css selector", "value": css}), &res); err != nil {
		m.t.Fatal(err)
	}
	for _, id := range res.Value {
		return id
	}
	m.t.Fatalf("no element id for %s", css)
	return ""
}

func (m *marionette) sendKeys(css, text string) {
	m.t.Helper()
	m.call("WebDriver:ElementSendKeys", map[string]any{"id": m.element(css), "text": text})
}

func (m *marionette) click(css string) {
	m.t.Helper()
	m.call("WebDriver:ElementClick", map[string]any{"id": m.element(css)})
}
