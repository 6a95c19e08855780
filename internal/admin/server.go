package admin

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/admin/account"
	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/bridge/kafka"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
)

//go:embed openapi.json
var openapiJSON []byte

// AccountsFile is the file in data_dir that keeps the dashboard accounts
// and API keys.
const AccountsFile = "admin.json"

// Options are what the admin server serves. Config, Broker and Auth are
// required; the rest may be nil.
type Options struct {
	// Config is the node's configuration: Admin configures the listener,
	// the whole is shown (redacted) by GET /api/v1/config.
	Config config.Config
	Broker *broker.Broker
	Auth   *auth.Service
	Kafka  *kafka.Bridge
	// NodeName names this node (default: the host name).
	NodeName string
	// Nodes lists the cluster's nodes; nil: this node and, with Peers, every
	// other node's own description.
	Nodes Nodes
	// Peers reaches the other nodes of a cluster: nodes, clients and kicks
	// then cover every node. Nil: a node alone.
	Peers Peers
	// Describe adds what the cluster knows to this node's description
	// (role, cluster address, readiness, leader). Nil: nothing.
	Describe func(*Node)
	// Reload re-reads the users and ACL files (SIGHUP's work).
	Reload func() error
	// Listeners returns the MQTT listeners' URLs with their real ports.
	Listeners func() []string
	Version   string
	Log       *slog.Logger
	// Handlers mounted beside the API: /metrics, /healthz and /readyz
	// without authentication, the dashboard at /. Nil: not mounted.
	Metrics, Healthz, Readyz, Dashboard http.Handler
}

// Server is the admin HTTP listener of one node.
type Server struct {
	opts     Options
	log      *slog.Logger
	accounts *account.Store
	limiter  *auth.Limiter
	ln       net.Listener
	srv      *http.Server
	url      string
	secure   bool
	node     string
	nodes    Nodes
	rates    rates
	stop     context.CancelFunc // ends measure; nil before Start
	done     sync.WaitGroup
}

// New opens the account store (creating the first admin account on the
// first start) and binds the listener; nothing is served until Start.
// With admin.listen empty it returns nil, nil.
func New(o Options) (*Server, error) {
	ac := o.Config.Admin
	if ac.Listen == "" {
		return nil, nil
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Log, node: o.NodeName, nodes: o.Nodes}
	if s.node == "" {
		s.node, _ = os.Hostname()
	}
	switch {
	case s.nodes == nil && o.Peers != nil:
		s.nodes = clusterNodes{s}
	case s.nodes == nil:
		s.nodes = localNode{s}
	}
	path := ""
	if o.Config.DataDir != "" {
		path = filepath.Join(o.Config.DataDir, AccountsFile)
	}
	pw := ac.DefaultPassword
	st, created, err := account.Open(account.Options{Path: path, DefaultPassword: pw, SessionTTL: ac.SessionTTL})
	if err != nil {
		return nil, fmt.Errorf("admin accounts: %w", err)
	}
	s.accounts = st
	switch {
	case created && pw == "":
		s.log.Warn("admin: created the dashboard account admin with password public; it must be changed at the first login")
	case created:
		s.log.Info("admin: created the dashboard account admin with admin.default_password")
	}
	if path == "" {
		s.log.Warn("admin: data_dir is empty: dashboard accounts and API keys are kept in memory only")
	}
	rl := ac.RateLimit
	if rl.PerAddress > 0 || rl.PerUsername > 0 {
		s.limiter = auth.NewLimiter(rl.PerAddress, rl.PerUsername, rl.Window, rl.Ban, rl.MaxDelay)
	}
	var tlsConf *tls.Config
	if ac.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(ac.TLS.CertFile, ac.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("admin.tls: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.secure = tlsConf != nil
	ln, err := net.Listen("tcp", ac.Listen)
	if err != nil && !ac.ListenSet {
		s.log.Warn("admin: the default admin.listen address is taken; no admin listener (set admin.listen)", "listen", ac.Listen, "err", err)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", ac.Listen, err)
	}
	scheme := "http"
	if tlsConf != nil {
		ln, scheme = tls.NewListener(ln, tlsConf), "https"
	}
	s.ln = ln
	s.url = scheme + "://" + ln.Addr().String()
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	if err := s.restoreBans(); err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

// URL is the listener's base URL with its real port (http://127.0.0.1:18083).
func (s *Server) URL() string { return s.url }

// Accounts returns the account store (tests, the lead's wiring).
func (s *Server) Accounts() *account.Store { return s.accounts }

// Handlers are the handlers mounted beside the API (see Options).
type Handlers struct{ Metrics, Healthz, Readyz, Dashboard http.Handler }

// Mount sets the handlers of /metrics, /healthz, /readyz and / that h
// holds; its nil ones leave what was mounted before (so the server may
// mount the metrics and health handlers, and cmd/culex the dashboard).
// Call it before Start.
func (s *Server) Mount(h Handlers) {
	for _, x := range []struct {
		dst *http.Handler
		h   http.Handler
	}{{&s.opts.Metrics, h.Metrics}, {&s.opts.Healthz, h.Healthz}, {&s.opts.Readyz, h.Readyz}, {&s.opts.Dashboard, h.Dashboard}} {
		if x.h != nil {
			*x.dst = x.h
		}
	}
}

// Start serves the listener.
func (s *Server) Start() {
	s.srv.Handler = s.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		s.measure(ctx)
	}()
	go func() {
		defer s.done.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin: listener stopped", "url", s.url, "err", err)
		}
	}()
	s.syncBans(ctx)
	s.log.Info("admin listening", "url", s.url)
}

// Shutdown stops accepting, lets requests in progress finish within ctx,
// and closes the listener.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.stop != nil {
		s.stop()
	}
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	s.ln.Close()
	s.done.Wait()
	return err
}

// Handler returns the whole admin handler: the API, the mounted handlers
// and the dashboard.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	mux.Handle("/api/", s.wrap(route{access: public, h: func(w http.ResponseWriter, r *http.Request) error {
		return noRoute(mux, w, r)
	}}))
	for path, h := range map[string]http.Handler{"/metrics": s.opts.Metrics, "/healthz": s.opts.Healthz, "/readyz": s.opts.Readyz} {
		if h != nil {
			mux.Handle(path, h)
		}
	}
	if s.opts.Dashboard != nil {
		mux.Handle("/", s.opts.Dashboard)
	}
	return securityHeaders(mux)
}

// noRoute answers a request no API route took: 405 with Allow when the
// path is a route's with other methods, else 404.
func noRoute(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := mux.Handler(r2); pattern != "/api/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return errorf(http.StatusMethodNotAllowed, "method_not_allowed", "%s %s: allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
	}
	return notFound("no API route %s %s (GET /api/v1/openapi.json lists them)", r.Method, r.URL.Path)
}

// securityHeaders are sent with every answer: no framing, no sniffing.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}
