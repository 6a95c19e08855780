package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/culexmq/culex/internal/admin"
	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/eventlog"
	"github.com/culexmq/culex/internal/health"
	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/metrics"
	"github.com/culexmq/culex/internal/store"
)

// readyEvery is how often readiness is evaluated for the log when
// nothing probes the node.
const readyEvery = 5 * time.Second

// ops are the node's operations surfaces: metrics, readiness and the
// event log (docs/operations.md).
type ops struct {
	metrics *metrics.Collector
	// registry serves metrics with the Go and process collectors, and
	// those RegisterMetrics adds.
	registry *prometheus.Registry
	events   *eventlog.Logger
	health   *health.Checker
	// serving[i] is true while listener i's accept loop runs.
	serving []atomic.Bool
	// state is what the node check reports: starting, ready, stopping.
	state atomic.Value
	// storeCheck is the pending store probe (nil when none).
	storeCheck atomic.Pointer[storeProbe]
	stop       context.CancelFunc
	wg         sync.WaitGroup
}

// initOps makes the hooks the broker needs before it is created.
func (s *Server) initOps(opts *broker.Options) {
	s.ops.metrics = metrics.New()
	s.ops.registry = metrics.Registry(s.ops.metrics)
	s.ops.events = eventlog.New(s.log)
	s.ops.health = health.New(s.log)
	s.ops.state.Store("starting")
	opts.Hooks = append(opts.Hooks, s.ops.metrics, s.ops.events)
}

// useOps points metrics, readiness and the summaries at the node's parts,
// once they all exist.
func (s *Server) useOps() {
	s.ops.serving = make([]atomic.Bool, len(s.listeners))
	src := metrics.Sources{Broker: s.broker, Auth: s.auth, Version: Version,
		Listeners: map[string]*listener.Listener{}}
	for i, l := range s.listeners {
		src.Listeners[s.cfg.Listeners[i].URL] = l
	}
	if s.kafka != nil {
		src.Kafka = s.kafka
	}
	if st, ok := s.store.(*store.Bolt); ok {
		src.Store = st
	}
	s.ops.metrics.Use(src)
	s.ops.events.Use(eventlog.Counters{
		Drops:  func() map[string]uint64 { return s.broker.Stats().Drops },
		Denied: func() int64 { return s.auth.Stats().Denied.Load() },
	})
	h := s.ops.health
	h.Add("node", func(context.Context) error {
		if st := s.ops.state.Load().(string); st != "ready" {
			return errors.New(st)
		}
		return nil
	})
	h.Add("listeners", s.listenersReady)
	h.Add("store", s.storeReady)
	if s.router != nil {
		// "cluster" includes JetStream (its meta leader, an election
		// fails it on every node at once): shared. "joined" is the node's
		// own part: it has joined once, and its NATS connection is up.
		var joined atomic.Bool
		h.AddShared("cluster", func(ctx context.Context) error {
			err := s.Ready(ctx)
			if err == nil {
				joined.Store(true)
			}
			return err
		})
		h.Add("joined", func(ctx context.Context) error {
			if !joined.Load() {
				if err := s.Ready(ctx); err != nil {
					return err
				}
				joined.Store(true)
			}
			if !s.fabric.Conn().IsConnected() {
				return errors.New("cluster: not connected to NATS")
			}
			return nil
		})
	}
	if s.kafka != nil && s.kafka.NeedsKafka() {
		h.AddShared("kafka", s.kafka.Ping) // one Kafka for every node
	}
}

// mountOps serves /metrics, /healthz and /readyz on the admin listener
// (when there is one); the dashboard is mounted beside them with its own
// Mount (Mount keeps what an earlier one set).
func (s *Server) mountOps() {
	if s.admin == nil {
		return
	}
	s.admin.Mount(admin.Handlers{Metrics: s.MetricsHandler(), Healthz: health.Healthz(), Readyz: s.ops.health.Readyz()})
}

// startOps starts the summaries and the readiness log; stopOps ends them.
func (s *Server) startOps() {
	ctx, cancel := context.WithCancel(context.Background())
	s.ops.stop = cancel
	s.ops.state.Store("ready")
	s.ops.wg.Add(2)
	go func() {
		defer s.ops.wg.Done()
		s.ops.events.Run(ctx, eventlog.Period)
	}()
	go func() {
		defer s.ops.wg.Done()
		s.ops.health.Run(ctx, readyEvery)
	}()
}

func (s *Server) stopOps() {
	s.ops.state.Store("shutting down")
	if s.ops.stop != nil {
		s.ops.stop()
	}
	s.ops.wg.Wait()
}

// listenersReady fails naming each listener whose accept loop stopped.
func (s *Server) listenersReady(context.Context) error {
	var errs []error
	for i := range s.ops.serving {
		if !s.ops.serving[i].Load() {
			errs = append(errs, fmt.Errorf("%s not accepting", s.cfg.Listeners[i].URL))
		}
	}
	return errors.Join(errs...)
}

// storeProbe is one empty write through the store's committer.
type storeProbe struct {
	since time.Time
	done  chan error
}

// storeReady sends an empty write through the store and waits for its
// commit: it fails when the store is closed, its commits fail, or it does
// not answer (a hung disk). One probe at a time: a probe still pending is
// waited for again rather than piled up.
func (s *Server) storeReady(ctx context.Context) error {
	p := s.ops.storeCheck.Load()
	if p == nil {
		p = &storeProbe{since: time.Now(), done: make(chan error, 1)}
		if !s.ops.storeCheck.CompareAndSwap(nil, p) {
			p = s.ops.storeCheck.Load()
		} else {
			s.store.Apply(nil, func(err error) { p.done <- err })
		}
	}
	select {
	case err := <-p.done:
		s.ops.storeCheck.CompareAndSwap(p, nil)
		p.done <- err // for another probe waiting on p
		if err != nil {
			return fmt.Errorf("commit failed: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no commit for %s", time.Since(p.since).Round(time.Millisecond))
	}
}

// MetricsHandler serves the node's Prometheus metrics (the admin
// listener's /metrics).
func (s *Server) MetricsHandler() http.Handler { return metrics.Handler(s.ops.registry) }

// RegisterMetrics adds collectors (the cluster's) to what MetricsHandler
// serves, at any time.
func (s *Server) RegisterMetrics(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := s.ops.registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Health is the node's readiness: mount Health().Readyz() at /readyz and
// health.Healthz() at /healthz; add checks (the cluster's "cluster") with
// Health().Add before Start.
func (s *Server) Health() *health.Checker { return s.ops.health }
