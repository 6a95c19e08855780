package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Draining a node (docs/cluster.md, "Draining"): it refuses new
// connections, its readiness turns false (load balancers stop sending it
// clients), and it disconnects its clients at cluster.drain_rate per
// second, v5 clients with DISCONNECT 0x9C and a Server Reference when one
// is known (cluster.drain_server_reference, or the drain command's --to),
// else 0x8B. `culex cluster drain NODE` reaches the node over the
// cluster's NATS (subject drain.<node>); SIGTERM drains before the node
// stops.

// ErrDraining is the readiness of a draining node.
var ErrDraining = errors.New("cluster: node draining: it refuses new connections and moves its clients away")

// ErrStopping refuses `culex cluster drain --undo` on a node that drains
// because it stops (SIGTERM): undoing it would take new clients in while
// the node shuts down, and cut the drain short.
var ErrStopping = errors.New("cluster: node stopping: its drain cannot be undone")

// errDrainUndone ends WaitDrained when the drain it waited for was undone
// before every client left.
var errDrainUndone = errors.New("cluster: drain undone before every client left")

// drainState is a Router's part of draining.
type drainState struct {
	// mu guards the fields below it.
	mu       sync.Mutex
	on       bool
	stopping bool // draining to stop: no undo
	cancel   context.CancelFunc
	run      *drainRun // the drain going on or finished, nil after an undo
	moved    int
}

// drainRun is one drain: done closes when it ends, err says how.
type drainRun struct {
	done chan struct{}
	err  error // set before done closes: nil once no client is left
}

// DrainRequest is what `culex cluster drain` sends to a node.
type DrainRequest struct {
	Undo bool `json:"undo,omitempty"`
	// Reference overrides cluster.drain_server_reference for this drain.
	Reference string `json:"reference,omitempty"`
}

// DrainReply is a node's answer.
type DrainReply struct {
	Node        string `json:"node"`
	Draining    bool   `json:"draining"`
	Connections int64  `json:"connections"`
	Rate        int    `json:"rate"`
	Reference   string `json:"reference,omitempty"`
	Error       string `json:"error,omitempty"`
}

func (r *Router) startDrain() error {
	s, err := r.nc.Subscribe(r.prefix+"drain."+r.node, r.onDrain)
	if err != nil {
		return err
	}
	r.subs = append(r.subs, s)
	return nil
}

func (r *Router) onDrain(msg *nats.Msg) {
	var req DrainRequest
	rep := DrainReply{Node: r.node}
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		rep.Error = "bad request: " + err.Error()
	} else if req.Undo {
		if err := r.Undrain(); err != nil {
			rep.Error = err.Error()
		}
	} else {
		rep.Reference = r.Drain(req.Reference)
	}
	rep.Draining = r.Draining()
	rep.Connections = r.b.Stats().ClientsConnected
	rep.Rate = r.f.Config().DrainRate
	data, _ := json.Marshal(rep)
	msg.Respond(data)
}

// Drain starts draining the node, if it is not draining already, with
// ref (or cluster.drain_server_reference when empty) as the Server
// Reference; it returns the reference in use.
func (r *Router) Drain(ref string) string {
	if ref == "" {
		ref = r.f.Config().DrainServerReference
	}
	r.dr.mu.Lock()
	defer r.dr.mu.Unlock()
	if r.dr.on {
		return ref
	}
	r.dr.on = true
	r.b.SetDraining(true, ref)
	ctx, cancel := context.WithCancel(context.Background())
	run := &drainRun{done: make(chan struct{})}
	r.dr.cancel, r.dr.run = cancel, run
	rate := r.f.Config().DrainRate
	r.log.Warn("draining: new connections refused, clients moved away", "node", r.node,
		"connections", r.b.Stats().ClientsConnected, "rate", rate, "server_reference", ref)
	go func() {
		defer close(run.done)
		start := time.Now()
		moved, err := r.b.DrainClients(ctx, rate)
		r.dr.mu.Lock()
		r.dr.moved += moved
		r.dr.mu.Unlock()
		if err != nil {
			run.err = errDrainUndone
			return
		}
		r.log.Info("drained: no client left", "node", r.node, "moved", moved, "took", time.Since(start).Round(time.Millisecond))
	}()
	return ref
}

// Undrain ends a drain: the node accepts connections and is ready again.
// A node draining to stop refuses (ErrStopping).
func (r *Router) Undrain() error {
	r.dr.mu.Lock()
	defer r.dr.mu.Unlock()
	if r.dr.stopping {
		return ErrStopping
	}
	if !r.dr.on {
		return nil
	}
	r.dr.cancel()
	r.dr.on, r.dr.run = false, nil
	r.b.SetDraining(false, "")
	r.log.Info("drain undone: accepting connections", "node", r.node)
	return nil
}

// Draining reports whether the node is draining.
func (r *Router) Draining() bool {
	r.dr.mu.Lock()
	defer r.dr.mu.Unlock()
	return r.dr.on
}

// WaitDrained waits until the drain has moved every client away, or ctx
// ends; it fails when the node is not draining, or when the drain is
// undone before every client left.
func (r *Router) WaitDrained(ctx context.Context) error {
	r.dr.mu.Lock()
	run := r.dr.run
	r.dr.mu.Unlock()
	if run == nil {
		return errors.New("cluster: not draining")
	}
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DrainToStop drains the node before it stops (SIGTERM) and waits as
// WaitDrained; from now on the drain cannot be undone (ErrStopping).
func (r *Router) DrainToStop(ctx context.Context) error {
	r.dr.mu.Lock()
	r.dr.stopping = true
	r.dr.mu.Unlock()
	r.Drain("")
	return r.WaitDrained(ctx)
}

// SendDrain asks node, over nc, to drain (or, with undo, to stop
// draining) and returns its answer.
func SendDrain(ctx context.Context, nc *nats.Conn, clusterName, node string, req DrainRequest) (DrainReply, error) {
	var rep DrainReply
	data, _ := json.Marshal(req)
	msg, err := nc.RequestWithContext(ctx, subjPrefix+clusterName+".drain."+node, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return rep, fmt.Errorf("no node named %q in cluster %q", node, clusterName)
	}
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return rep, err
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}
