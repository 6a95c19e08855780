package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestHandlerServesIndexWithSecurityHeaders(t *testing.T) {
	res := get(t, Handler(), "GET", "/")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.Contains(string(body), `<script type="module" src="js/app.js">`) {
		t.Fatalf("GET / = %d %q, want the index page", res.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": contentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-cache",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

// TestModulesServedAsJavaScript: browsers refuse an ES module served with
// another content type.
func TestModulesServedAsJavaScript(t *testing.T) {
	res := get(t, Handler(), "GET", "/js/app.js")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /js/app.js = %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestHandlerRefusesWhatItDoesNotServe(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/nope.js", 404},
		{"GET", "/js/", 404}, // no directory listing
		{"GET", "/js", 404},  // nor without the slash
		{"GET", "/api/v2/x", 404},
		{"GET", "/../../etc/passwd", 404},
		{"POST", "/", 405},
		{"DELETE", "/js/app.js", 405},
		{"HEAD", "/css/app.css", 200},
	} {
		if res := get(t, h, c.method, c.path); res.StatusCode != c.code {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, res.StatusCode, c.code)
		}
	}
}

// importRE finds the relative module specifiers of static and dynamic imports.
var importRE = regexp.MustCompile(`(?:from|import)\s*\(?\s*["'` + "`" + `](\.{1,2}/[^"'` + "`" + `$]+)["'` + "`" + `]`)

// TestEveryImportResolves walks the embedded modules: every relative import
// names an embedded file, and every page of the navigation has its module
// (the router loads pages/<path>.js).
func TestEveryImportResolves(t *testing.T) {
	err := fs.WalkDir(static, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, ".js") {
			return err
		}
		src, err := fs.ReadFile(static, name)
		if err != nil {
			return err
		}
		dir := name[:strings.LastIndex(name, "/")+1]
		for _, m := range importRE.FindAllStringSubmatch(string(src), -1) {
			target := resolve(dir, m[1])
			if _, err := fs.Stat(static, target); err != nil {
				t.Errorf("%s imports %s: %s is not embedded", name, m[1], target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	app, _ := fs.ReadFile(static, "js/app.js")
	for _, m := range regexp.MustCompile(`\{path: "([a-z-]+)"`).FindAllStringSubmatch(string(app), -1) {
		if _, err := fs.Stat(static, "js/pages/"+m[1]+".js"); err != nil {
			t.Errorf("page %s has no module js/pages/%s.js", m[1], m[1])
		}
	}
}

func resolve(dir, rel string) string {
	parts := strings.Split(strings.TrimSuffix(dir, "/"), "/")
	for _, p := range strings.Split(rel, "/") {
		switch p {
		case ".":
		case "..":
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/")
}
