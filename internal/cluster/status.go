package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
)

// Status is what a node says about itself to `culex cluster status`.
type Status struct {
	Node        string    `json:"node"`
	Role        string    `json:"role"`
	Address     string    `json:"address"` // cluster.listen, or nats_url
	Connections int64     `json:"connections"`
	Started     time.Time `json:"started"`
	Routes      int       `json:"routes"`      // NATS route connections
	Peers       []string  `json:"peers"`       // nodes it routes MQTT to
	MetaLeader  string    `json:"meta_leader"` // JetStream meta leader as it sees it
	Forwarded   uint64    `json:"forwarded"`
	Received    uint64    `json:"received"`
	Ready       string    `json:"ready"` // "yes" or what it waits for
}

// Status is this node's status.
func (r *Router) Status() Status {
	cfg := r.f.Config()
	addr := cfg.Listen
	if cfg.NATSURL != "" {
		addr = cfg.NATSURL
	}
	st := Status{
		Node: r.node, Role: string(r.f.Role()), Address: addr,
		Connections: r.b.Stats().ClientsConnected, Started: r.f.Started().UTC(),
		Routes: r.f.Routes(), Peers: r.Nodes(), MetaLeader: r.f.MetaLeader(),
		Forwarded: r.forwarded.Load(), Received: r.received.Load(), Ready: "yes",
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Ready(ctx); err != nil {
		st.Ready = err.Error()
	}
	return st
}

func (r *Router) onStatus(msg *nats.Msg) {
	go func() { // Ready may ask JetStream: not on the subscription's goroutine
		data, _ := json.Marshal(r.Status())
		msg.Respond(data)
	}()
}

// Gather asks every node of the cluster for its Status over nc and returns
// the answers that came within wait, sorted by node name.
func Gather(ctx context.Context, nc *nats.Conn, clusterName string, wait time.Duration) ([]Status, error) {
	inbox := nats.NewInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subjPrefix+clusterName+".status", inbox, nil); err != nil {
		return nil, err
	}
	var out []Status
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case m := <-ch:
			var s Status
			if json.Unmarshal(m.Data, &s) == nil {
				out = append(out, s)
			}
		case <-t.C:
			sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}
