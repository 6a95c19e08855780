// Package fabric is a node's connection to the cluster: an embedded NATS
// server (routes to the other nodes, JetStream on cores) and a nats.go
// connection to it in-process, or a connection to an external NATS cluster
// (cluster.nats_url). It knows no MQTT.
package fabric

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Role is a node's role in the cluster.
type Role string

// The roles (cluster.role).
const (
	Core      Role = "core"
	Replicant Role = "replicant"
)

// routeUser is the user name every node presents on the cluster port, with
// cluster.secret as its password.
const routeUser = "culex"

// Fabric is a running connection to the cluster.
type Fabric struct {
	cfg    config.Cluster
	node   string
	role   Role
	srv    *server.Server // nil with an external NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	start  time.Time
	closed sync.Once
}

// Start starts the node's fabric for cfg (cfg.Enabled() must be true):
// the embedded NATS server when cfg.Listen is set, then the connection.
// It returns once the local server accepts connections, without waiting
// for the cluster: Ready says when the node has joined.
func Start(cfg config.Cluster, dataDir string, log *slog.Logger) (*Fabric, error) {
	if !cfg.Enabled() {
		return nil, errors.New("cluster: neither cluster.listen nor cluster.nats_url is set")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fabric{cfg: cfg, node: cfg.Node(), role: Core, log: log, start: time.Now()}
	if !cfg.IsCore() {
		f.role = Replicant
	}
	if cfg.NATSURL != "" {
		nc, err := nats.Connect(cfg.NATSURL, f.connOpts()...)
		if err != nil {
			return nil, fmt.Errorf("cluster.nats_url: %w", err)
		}
		f.nc = nc
	} else {
		opts, err := serverOptions(cfg, f.node, f.role, dataDir)
		if err != nil {
			return nil, err
		}
		s, err := server.NewServer(opts)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		s.SetLoggerV2(natsLogger{log.With("component", "nats")}, false, false, false)
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			s.Shutdown()
			return nil, fmt.Errorf("cluster: the embedded NATS server did not start (cluster.listen %s)", cfg.Listen)
		}
		f.srv = s
		nc, err := nats.Connect("", append(f.connOpts(), nats.InProcessServer(s), nats.Token(localToken))...)
		if err != nil {
			s.Shutdown()
			return nil, fmt.Errorf("cluster: in-process connection: %w", err)
		}
		f.nc = nc
	}
	js, err := jetstream.New(f.nc)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	f.js = js
	return f, nil
}

func (f *Fabric) connOpts() []nats.Option {
	return []nats.Option{
		nats.Name("culex-" + f.node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		// The node publishes at MQTT rates: a big pending buffer for the
		// subscription callbacks, never dropping silently (slow consumer
		// errors are logged).
		nats.SyncQueueLen(1 << 16),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			f.log.Error("cluster connection error", "subject", subj, "err", err)
		}),
	}
}

// serverOptions are the embedded server's options for cfg.
func serverOptions(cfg config.Cluster, node string, role Role, dataDir string) (*server.Options, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster.listen: %q: bad port", cfg.Listen)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if port == 0 {
		port = server.RANDOM_PORT // NATS reads 0 as "no cluster port"
	}
	o := &server.Options{
		ServerName: node,
		// The client port is needed (routes wait for its listener) but
		// used by nobody: loopback, a free port, a random token that
		// only the in-process connection knows.
		Host:          "127.0.0.1",
		Port:          server.RANDOM_PORT,
		Authorization: localToken,
		NoSigs:        true,
		MaxPayload:    64 << 20,
		Cluster: server.ClusterOpts{
			Name:           cfg.Name,
			Host:           host,
			Port:           port,
			ConnectRetries: -1, // routes to peers are retried for ever
			PoolSize:       -1, // one route per peer: one path keeps per-publisher order
			PingInterval:   cfg.NodeTimeout / 4,
			MaxPingsOut:    3,
		},
	}
	if cfg.Secret != "" {
		o.Cluster.Username, o.Cluster.Password = routeUser, cfg.Secret
	}
	if t := cfg.TLS; t.CertFile != "" {
		tc, err := tlsConfig(t)
		if err != nil {
			return nil, err
		}
		o.Cluster.TLSConfig = tc
		o.Cluster.TLSTimeout = 5
	}
	routes, err := resolvePeers(cfg.Peers, cfg.Secret)
	if err != nil {
		return nil, err
	}
	if len(routes) == 0 && role == Core {
		// A first core alone: JetStream needs a configured route, and a
		// route to itself is one (the server recognises and drops it).
		self := host
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			self = "127.0.0.1"
		}
		routes, _ = resolvePeers([]string{net.JoinHostPort(self, portStr)}, cfg.Secret)
	}
	o.Routes = routes
	if role == Core {
		dir := cfg.Store(dataDir)
		if dir == "" {
			return nil, errors.New("cluster.store_dir: a core keeps the cluster's state on disk: set data_dir or cluster.store_dir")
		}
		o.JetStream = true
		o.StoreDir = dir
		sync, _ := cfg.SyncInterval()
		if sync == 0 {
			o.SyncAlways = true
			o.SyncInterval = time.Second // unused with SyncAlways, but never the 2-minute default
		} else {
			o.SyncInterval = sync
		}
	}
	return o, nil
}

// tlsConfig is the cluster port's TLS: our certificate, and peers verified
// against the cluster CA in both directions.
func tlsConfig(t config.ClusterTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.cert_file: %w", err)
	}
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster.tls.ca_file: %s holds no PEM certificate", t.CAFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		RootCAs:      pool,
	}, nil
}

// localToken guards the embedded server's client port.
var localToken = rand.Text()

// lookupHost is net.DefaultResolver.LookupHost; tests replace it.
var lookupHost = net.DefaultResolver.LookupHost

// resolvePeers turns cluster.peers into route URLs: a name that resolves to
// several addresses (a headless service) gives one route per address. A
// name that does not resolve yet is kept as is: the server retries it.
func resolvePeers(peers []string, secret string) ([]*url.URL, error) {
	var out []*url.URL
	seen := make(map[string]bool)
	for i, p := range peers {
		host, port, err := net.SplitHostPort(p)
		if err != nil {
			return nil, fmt.Errorf("cluster.peers[%d]: %w", i, err)
		}
		addrs := []string{host}
		if net.ParseIP(host) == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if a, err := lookupHost(ctx, host); err == nil && len(a) > 0 {
				addrs = a
			}
			cancel()
		}
		for _, a := range addrs {
			hp := net.JoinHostPort(a, port)
			if seen[hp] {
				continue
			}
			seen[hp] = true
			u := &url.URL{Scheme: "nats-route", Host: hp}
			if secret != "" {
				u.User = url.UserPassword(routeUser, secret)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// Conn is the node's NATS connection.
func (f *Fabric) Conn() *nats.Conn { return f.nc }

// JetStream is the cluster's JetStream, reached from any node: a core
// serves it, a replicant's requests travel over its routes to the cores
// (the JetStream API subjects are in the one account every node shares).
func (f *Fabric) JetStream() jetstream.JetStream { return f.js }

// NodeName is the node's name in the cluster.
func (f *Fabric) NodeName() string { return f.node }

// Role is the node's role.
func (f *Fabric) Role() Role { return f.role }

// ClusterName is cluster.name.
func (f *Fabric) ClusterName() string { return f.cfg.Name }

// Config is the cluster configuration the fabric runs with.
func (f *Fabric) Config() config.Cluster { return f.cfg }

// Started is when the fabric started.
func (f *Fabric) Started() time.Time { return f.start }

// Server is the embedded NATS server, nil with an external NATS.
func (f *Fabric) Server() *server.Server { return f.srv }

// Routes is how many route connections the embedded server has (0 with
// an external NATS).
func (f *Fabric) Routes() int {
	if f.srv == nil {
		return 0
	}
	return f.srv.NumRoutes()
}

// MetaLeader is the name of the JetStream meta leader as this node sees
// it, "" while unknown or on a node without JetStream.
func (f *Fabric) MetaLeader() string {
	if f.srv == nil || !f.srv.JetStreamEnabled() {
		return ""
	}
	jsz, err := f.srv.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return ""
	}
	return jsz.Meta.Leader
}

// Ready returns nil once the node has joined: its connection is up and the
// cluster's JetStream answers (so its meta leader is known). It returns the
// reason when ctx ends first. Cheap enough to call from a health check.
func (f *Fabric) Ready(ctx context.Context) error {
	if !f.nc.IsConnected() {
		return errors.New("cluster: not connected to NATS")
	}
	if f.srv != nil && len(f.cfg.Peers) > 0 && f.srv.NumRoutes() == 0 {
		return fmt.Errorf("cluster: no route to any peer yet (%s)", strings.Join(f.cfg.Peers, ", "))
	}
	if f.role == Core && f.srv != nil && f.MetaLeader() == "" {
		return errors.New("cluster: JetStream meta leader not elected yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := f.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("cluster: JetStream not reachable: %w", err)
	}
	return nil
}

// WaitReady polls Ready until it succeeds or ctx ends, logging "waiting
// for ..." every logEvery and "cluster joined" once.
func (f *Fabric) WaitReady(ctx context.Context, logEvery time.Duration) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		err := f.Ready(ctx)
		if err == nil {
			f.log.Info("cluster joined", "node", f.node, "role", f.role, "routes", f.Routes(),
				"meta_leader", f.MetaLeader(), "after", time.Since(f.start).Round(time.Millisecond))
			return nil
		}
		if time.Since(last) >= logEvery {
			f.log.Warn("waiting for the cluster", "node", f.node, "reason", err.Error())
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// Close closes the connection and shuts the embedded server down.
func (f *Fabric) Close() {
	f.closed.Do(func() {
		if f.nc != nil {
			f.nc.Close()
		}
		if f.srv != nil {
			f.srv.Shutdown()
			f.srv.WaitForShutdown()
		}
	})
}

// natsLogger sends the embedded server's log to slog (notices at debug:
// the server is chatty about routes).
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any) {
	if strings.HasPrefix(format, "Maximum payloads over") {
		return // MQTT's own max_packet_size bounds what is forwarded
	}
	n.l.Warn(fmt.Sprintf(format, v...))
}
func (n natsLogger) Fatalf(format string, v ...any) { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any) { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }

// Observe joins the cluster of cfg for a moment, as `culex cluster status`
// does: through cfg.NATSURL, or as a member without JetStream routed to
// cfg.Peers and to cfg.Listen (the node whose config file this is) from a
// loopback port of its own. It returns once its routes stop growing (the
// mesh is complete), within wait.
func Observe(cfg config.Cluster, wait time.Duration) (*Fabric, error) {
	cfg.NodeName = fmt.Sprintf("observer-%d", os.Getpid())
	cfg.Role = string(Replicant)
	if cfg.NATSURL == "" {
		if cfg.Listen != "" {
			host, port, _ := net.SplitHostPort(cfg.Listen)
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
				host = "127.0.0.1"
			}
			cfg.Peers = append(append([]string(nil), cfg.Peers...), net.JoinHostPort(host, port))
		}
		cfg.Listen = "127.0.0.1:" + strconv.Itoa(server.RANDOM_PORT)
	}
	f, err := Start(cfg, "", nil)
	if err != nil {
		return nil, err
	}
	if f.srv == nil {
		return f, nil
	}
	deadline := time.Now().Add(wait)
	last, since := 0, time.Now()
	for time.Now().Before(deadline) {
		if n := f.srv.NumRoutes(); n != last {
			last, since = n, time.Now()
		} else if n > 0 && time.Since(since) > 500*time.Millisecond {
			return f, nil
		}
		time.Sleep(20 * time.Millisecond) // polling the route count
	}
	if last == 0 {
		f.Close()
		return nil, fmt.Errorf("cluster: no route to %s within %v (check cluster.peers, cluster.secret and the firewall)", strings.Join(cfg.Peers, ", "), wait)
	}
	return f, nil
}

// LinkTLS is the TLS of the node's links (the router's direct
// connections to other nodes): the cluster port's, nil without
// cluster.tls.
func (f *Fabric) LinkTLS() (*tls.Config, error) {
	if f.cfg.TLS.CertFile == "" {
		return nil, nil
	}
	return tlsConfig(f.cfg.TLS)
}

// PeerIP is the address of the embedded server's route to node, "" with
// none (or an external NATS).
func (f *Fabric) PeerIP(node string) string {
	if f.srv == nil {
		return ""
	}
	rz, err := f.srv.Routez(nil)
	if err != nil {
		return ""
	}
	for _, rt := range rz.Routes {
		if rt.RemoteName == node && rt.IP != "" {
			return rt.IP
		}
	}
	return ""
}
