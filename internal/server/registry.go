package server

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/psession"
	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/culexmq/culex/internal/config"
	"github.com/nats-io/nats.go"
)

// clusterState is the node's share of the cluster's session state: the
// client id registry, the wills and the retained messages
// (internal/cluster/registry), on the fabric's connection.
type clusterState struct {
	reg *registry.Registry
	// sess keeps the persistent sessions (internal/cluster/psession).
	sess   *psession.Store
	cancel context.CancelFunc
	done   chan struct{}
	sdone  chan struct{}
}

// openClusterState makes the registry of node on nc and plugs it into the
// broker's options: CONNECT claims its client id cluster-wide, wills and
// retained messages are shared.
func openClusterState(nc *nats.Conn, node string, cfg config.Cluster, log *slog.Logger, opts *broker.Options) (*clusterState, error) {
	r, err := registry.New(registry.Config{
		Conn:      nc,
		Node:      node,
		Prefix:    bucketPrefix(cfg.Name),
		Replicas:  3,
		Heartbeat: cfg.NodeTimeout / 5,
		DeadAfter: cfg.NodeTimeout,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	opts.Registry, opts.RetainedReplica = r, r
	sweep := time.Duration(0)
	if !cfg.IsCore() {
		sweep = -1 // the cores sweep expired session records
	}
	st, err := psession.New(psession.Config{
		Conn: nc, Cluster: bucketPrefix(cfg.Name), Prefix: bucketPrefix(cfg.Name),
		Timeout: cfg.AckTimeout, MaxLogBytes: cfg.Sessions.MaxLogBytes, MaxLogAge: cfg.Sessions.MaxLogAge,
		SweepEvery: sweep, Logger: log,
		Node: node, Incarnation: r.Incarnation(), Alive: r.Alive,
		// The broker holds the reader while a persistent session of this
		// node subscribes (broker.ReaderHolder).
		ReaderOnDemand: true,
	})
	if err != nil {
		r.Close()
		return nil, err
	}
	opts.SessionStore = st
	return &clusterState{reg: r, sess: st, done: make(chan struct{}), sdone: make(chan struct{})}, nil
}

// start connects the registry to the cluster in the background, once the
// broker has started: until it is ready, CONNECTs are refused with 0x88.
func (c *clusterState) start(b *broker.Broker, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		if err := c.reg.Start(ctx, b); err != nil && ctx.Err() == nil {
			log.Error("cluster: session registry not started", "err", err)
		}
	}()
	go func() {
		defer close(c.sdone)
		if err := c.sess.Start(ctx); err != nil && ctx.Err() == nil {
			log.Error("cluster: persistent sessions not started", "err", err)
		}
	}()
}

// ready says whether the registry and the persistent sessions are
// connected (for readiness).
func (c *clusterState) ready() error {
	if err := c.reg.Ready(); err != nil {
		return err
	}
	return c.sess.Ready()
}

// close stops it; the broker has shut down (its releases and wills went
// through the registry).
func (c *clusterState) close() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
		<-c.sdone
	}
	c.sess.Close()
	c.reg.Close()
}

// bucketPrefix names the cluster's buckets and subjects after cluster.name,
// in the characters bucket names allow.
func bucketPrefix(name string) string {
	if name == "" || name == "culex" {
		return "culex"
	}
	return "culex_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, name)
}
