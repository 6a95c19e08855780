package server

import (
	"context"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster"
	"github.com/culexmq/culex/internal/cluster/fabric"
)

// openCluster starts the fabric when a cluster is configured, before the
// broker, and hooks the router into the broker's options. A node alone
// starts nothing.
func (s *Server) openCluster(opts *broker.Options) error {
	cc := s.cfg.Cluster
	if !cc.Enabled() {
		return nil
	}
	for _, w := range cc.Warnings() {
		s.log.Warn(w)
	}
	f, err := fabric.Start(cc, s.cfg.DataDir, s.log)
	if err != nil {
		return err
	}
	s.fabric = f
	s.router = cluster.New(f, s.log)
	opts.Hooks = append(opts.Hooks, s.router)
	s.log.Info("cluster fabric started", "cluster", cc.Name, "node", f.NodeName(), "role", f.Role(), "listen", cc.Listen, "nats_url", cc.NATSURL)
	return nil
}

// startCluster starts routing between nodes once the broker has restored
// its sessions, and logs when the node has joined.
func (s *Server) startCluster() error {
	if s.router == nil {
		return nil
	}
	if err := s.router.Start(s.broker); err != nil {
		return err
	}
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.router.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		every := s.cfg.Cluster.ReadyTimeout
		if every <= 0 {
			every = 30 * time.Second
		}
		s.router.WaitReady(ctx, every)
	}()
	return nil
}

// Ready reports whether the node is ready to serve: nil for a node alone;
// in a cluster, once it has joined and the others' subscriptions are
// known. The health endpoint and the logs use it.
func (s *Server) Ready(ctx context.Context) error {
	if s.router == nil {
		return nil
	}
	return s.router.Ready(ctx)
}

// Cluster returns the node's router, nil for a node alone.
func (s *Server) Cluster() *cluster.Router { return s.router }

// Fabric returns the node's fabric (NATS connection, JetStream), nil for
// a node alone.
func (s *Server) Fabric() *fabric.Fabric { return s.fabric }

// closeCluster stops routing and the fabric, after the broker.
func (s *Server) closeCluster() {
	if s.router != nil {
		s.router.Close()
	}
	if s.fabric != nil {
		s.fabric.Close()
	}
}
