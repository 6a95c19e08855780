// Package dashboard is Culex's web UI: plain HTML, CSS and JavaScript modules
// embedded in the binary, so `go run ./cmd/culex serve` serves it with no
// build step. The pages talk only to the public REST API under /api/v1
// (internal/admin), so everything the dashboard can do a script can do too.
// docs/dashboard.md is the manual.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// static is the tree served at "/".
var static, _ = fs.Sub(files, "static")

// contentSecurityPolicy allows the page only its own scripts, styles and API:
// client ids, usernames, topics and payloads shown by the dashboard come from
// devices, and the pages insert them as text, never as markup; the policy is
// the second fence.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Handler serves the dashboard. The admin server mounts it at "/" next to
// the API; it answers GET and HEAD for its own files and 404 for anything
// else, so a mistyped API path is not answered with the page.
func Handler() http.Handler {
	fileServer := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/"); name != "" {
			// No directory listings: the root is the only directory served
			// (as its index.html).
			if fi, err := fs.Stat(static, name); err != nil || fi.IsDir() {
				http.NotFound(w, r)
				return
			}
		}
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		// The files change with the binary: revalidate rather than keep an
		// old page after an upgrade (embed.FS files carry no modification
		// time, so the revalidation is a full fetch of a few small files).
		h.Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	})
}
