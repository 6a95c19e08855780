// Package server wires one Culex node together: config -> store -> broker ->
// listeners, and takes them down again in the reverse order.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/bridge/kafka"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster"
	"github.com/culexmq/culex/internal/cluster/fabric"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
)

// Version is reported in $SYS and logs; cmd/culex sets it.
var Version = "dev"

// Server is one running node.
type Server struct {
	cfg       config.Config
	log       *slog.Logger
	store     store.Store
	auth      *auth.Service
	kafka     *kafka.Bridge   // nil without kafka.brokers
	fabric    *fabric.Fabric  // nil without a cluster
	router    *cluster.Router // nil without a cluster
	broker    *broker.Broker
	listeners []*listener.Listener
	serving   sync.WaitGroup // one per listener's accept loop

	mu   sync.Mutex
	done bool // Shutdown has run
}

// New validates cfg, opens the store, creates the broker and binds every
// listener (so URL reports real ports at once). Nothing is served until Start.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log}
	if err := s.open(); err != nil {
		s.closeAll()
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	cfg := s.cfg
	if cfg.DataDir == "" {
		s.store = store.NewMemory()
		s.log.Warn("data_dir is empty: sessions and retained messages are kept in memory only")
	} else {
		st, err := store.OpenBolt(cfg.DataDir, store.BoltOptions{MaxBatchDelay: cfg.Store.MaxBatchDelay})
		if err != nil {
			return fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
		}
		s.store = st
	}
	logAuthPolicy(s.log, &cfg.Auth)
	a, err := auth.New(cfg.Auth, s.log)
	if err != nil {
		return err
	}
	s.auth = a
	s.warnClientIDRules()
	opts := broker.Options{
		Config:         cfg.MQTT,
		AllowAnonymous: cfg.Auth.AnonymousAllowed(),
		SysInterval:    cfg.SysInterval,
		Store:          s.store,
		Logger:         s.log,
		Version:        Version,

		SuperuserTakeover: cfg.Auth.SuperuserTakeover,
		ClientIDBinding:   cfg.Auth.ClientIDBinding,
		BridgeClientIDs:   !cfg.Auth.HasBackend(),
	}
	a.Apply(&opts)
	if cfg.MQTT.BridgeClients != "" && !cfg.Auth.HasBackend() && cfg.Auth.AnonymousAllowed() {
		s.log.Warn("mqtt.bridge_clients names client ids that any anonymous client can take, with the bridge's larger queue: "+
			"configure authentication and name the bridge's identity", "bridge_clients", cfg.MQTT.BridgeClients)
	}
	if cfg.Kafka.Brokers != "" {
		if err := s.openKafka(&opts); err != nil {
			return err
		}
	}
	if err := s.openCluster(&opts); err != nil {
		return err
	}
	b, err := broker.New(opts)
	if err != nil {
		return err
	}
	s.broker = b
	if s.router != nil {
		b.SetSharedRouter(s.router)
	}
	a.SetDisconnect(func(clientID string) { b.Disconnect(clientID, packet.ErrNotAuthorized) })
	a.SetDisconnectClient(func(c *broker.ClientInfo, code packet.Code) { b.DisconnectClient(c, code) })
	for i, lc := range cfg.Listeners {
		l, err := listener.New(lc, b.Handle, s.log)
		if err != nil {
			return fmt.Errorf("listeners[%d]: %w", i, err)
		}
		s.listeners = append(s.listeners, l)
	}
	s.noteSharedAddress()
	return nil
}

// noteSharedAddress says in one line, at start-up, what a load balancer in
// front of a listener without PROXY protocol does: every device arrives
// from its address, so a ban by address shuts them all out. A warning
// where a load balancer is likely (Kubernetes), a note elsewhere; nothing
// when every such listener is on loopback.
func (s *Server) noteSharedAddress() {
	for i, l := range s.listeners {
		a, ok := l.Addr().(*net.TCPAddr)
		if s.cfg.Listeners[i].ProxyProtocol || ok && a.IP.IsLoopback() {
			continue
		}
		level := slog.LevelInfo
		if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "listener without proxy_protocol: behind a load balancer every device shares its address, "+
			"and a failed-login ban by address shuts them all out (set proxy_protocol and trusted_proxies)", "url", l.URL())
		return
	}
}

// openKafka builds the Kafka bridge and checks its topics. Unknown topics,
// SASL and TLS failures stop start-up; Kafka being unreachable does not:
// the node serves MQTT and QoS 1/2 publishes on Kafka routes wait for it
// (or fill the spool), as during any later outage.
func (s *Server) openKafka(opts *broker.Options) error {
	if len(s.cfg.Kafka.Commands) > 0 {
		id, err := s.cfg.Kafka.ResolveGroupInstanceID(s.cfg.DataDir)
		if err != nil {
			return fmt.Errorf("kafka.group_instance_id: %w", err)
		}
		logGroupMembership(s.log, id)
	}
	k, err := kafka.New(s.cfg.Kafka, s.log)
	if err != nil {
		return err
	}
	s.kafka = k
	// Records carry the identity auth decided, not CONNECT's username field.
	k.UseIdentity(func(c *broker.ClientInfo) string {
		if id, ok := s.auth.Adapter().Identity(c); ok && !id.Anonymous {
			return id.Username
		}
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), kafkaCheckTimeout)
	defer cancel()
	if err := k.Check(ctx); err != nil {
		if !kafka.Unreachable(err) {
			return err
		}
		s.log.Warn("kafka is unreachable; starting anyway, publishes on kafka routes wait for it", "err", err)
	}
	opts.Interceptors = append(opts.Interceptors, k.Interceptor())
	return nil
}

// logGroupMembership says at start which consumer group membership the
// command routes use.
func logGroupMembership(log *slog.Logger, id string) {
	if id == "" || id == config.GroupInstanceIDNone {
		log.Info("kafka commands: dynamic group membership (no group_instance_id)")
		return
	}
	log.Info("kafka commands: static group membership", "group_instance_id", id)
}

// kafkaCheckTimeout bounds the start-up topic check.
const kafkaCheckTimeout = 10 * time.Second

// Start restores durable state and starts serving every listener.
func (s *Server) Start() error {
	if err := s.broker.Start(); err != nil {
		return err
	}
	if err := s.startCluster(); err != nil {
		return err
	}
	if s.kafka != nil {
		if err := s.kafka.Start(context.Background(), s.broker); err != nil {
			return err
		}
	}
	for _, l := range s.listeners {
		s.serving.Add(1)
		go func() {
			defer s.serving.Done()
			if err := l.Serve(); err != nil {
				s.log.Error("listener stopped", "url", l.URL(), "err", err)
			}
		}()
		s.log.Info("listening", "url", l.URL())
	}
	return nil
}

// URL returns the URL, with its real port, of the first listener whose
// scheme is scheme (tcp, ssl, ws or wss), or "".
func (s *Server) URL(scheme string) string {
	for _, l := range s.listeners {
		if u := l.URL(); len(u) > len(scheme)+3 && u[:len(scheme)+3] == scheme+"://" {
			return u
		}
	}
	return ""
}

// Reload re-reads the users and ACL files (SIGHUP); on error the previous
// ones stay in force.
func (s *Server) Reload() error {
	if err := s.auth.Reload(); err != nil {
		return err
	}
	s.warnClientIDRules()
	return nil
}

// warnClientIDRules warns when ACL rules trust client ids (${clientid},
// `client NAME`) while ids are not bound to identities: any client may
// present any id, and with it those rights.
func (s *Server) warnClientIDRules() {
	if s.cfg.Auth.ClientIDBinding == "none" && s.auth.ACL().UsesClientID() {
		s.log.Warn("ACL rules use ${clientid} or client sections, but client ids are not bound to identities: "+
			"any client presenting a client id gets its rights; set auth.client_id_binding (equal or prefix)",
			"acl_file", s.cfg.Auth.ACLFile)
	}
}

// Auth returns the node's authentication and ACL service.
func (s *Server) Auth() *auth.Service { return s.auth }

// Listeners returns the node's listeners in config order.
func (s *Server) Listeners() []*listener.Listener { return s.listeners }

// Broker returns the node's broker.
func (s *Server) Broker() *broker.Broker { return s.broker }

// Shutdown stops accepting, disconnects clients (v5: DISCONNECT 0x8B),
// flushes durable state and closes the store, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	s.mu.Unlock()
	var errs []error
	for _, l := range s.listeners {
		errs = append(errs, l.Close())
	}
	s.serving.Wait()
	if s.kafka != nil {
		s.kafka.Close() // first: unacknowledged publishes fail, devices retransmit
	}
	errs = append(errs, s.broker.Shutdown(ctx))
	s.closeCluster()
	errs = append(errs, s.auth.Close())
	errs = append(errs, s.store.Close())
	return errors.Join(errs...)
}

// closeAll releases what open managed to create before it failed.
func (s *Server) closeAll() {
	for _, l := range s.listeners {
		l.Close()
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.broker != nil {
		s.broker.Shutdown(context.Background())
	}
	s.closeCluster()
	if s.auth != nil {
		s.auth.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}
