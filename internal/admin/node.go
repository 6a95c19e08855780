package admin

import (
	"context"
	"net/http"
	"time"
)

// Node is one node as GET /api/v1/nodes shows it.
type Node struct {
	Name          string    `json:"name"`
	Version       string    `json:"version"`
	Status        string    `json:"status"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Connections   int64     `json:"connections"`
	Sessions      int64     `json:"sessions"`
	Subscriptions int64     `json:"subscriptions"`
	Retained      int64     `json:"retained"`
	Listeners     []string  `json:"listeners"`
	AdminURL      string    `json:"admin_url"`
	// In a cluster: the node's role (core, replicant), cluster address,
	// readiness ("yes" or what it waits for) and the JetStream meta leader
	// as it sees it.
	Role       string `json:"role,omitempty"`
	Address    string `json:"address,omitempty"`
	Ready      string `json:"ready,omitempty"`
	MetaLeader string `json:"meta_leader,omitempty"`
}

// Nodes lists a cluster's nodes; the cluster implements it, and a single
// node uses Server.Local.
type Nodes interface {
	Nodes(ctx context.Context) []Node
}

// localNode is Nodes of a node alone.
type localNode struct{ s *Server }

func (l localNode) Nodes(context.Context) []Node { return []Node{l.s.Local()} }

// Local describes this node.
func (s *Server) Local() Node {
	st := s.opts.Broker.Stats()
	started := s.opts.Broker.Started()
	n := Node{Name: s.node, Version: s.opts.Version, Status: "running", StartedAt: started.UTC(),
		UptimeSeconds: int64(time.Since(started) / time.Second), Connections: st.ClientsConnected,
		Sessions: st.Sessions, Subscriptions: st.Subscriptions, Retained: int64(s.opts.Broker.RetainedCount()), Listeners: []string{}, AdminURL: s.url}
	if s.opts.Listeners != nil {
		n.Listeners = append(n.Listeners, s.opts.Listeners()...)
	}
	if s.opts.Describe != nil {
		s.opts.Describe(&n)
	}
	return n
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, s.nodes.Nodes(r.Context()))
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("node")
	for _, n := range s.nodes.Nodes(r.Context()) {
		if n.Name == name {
			return writeJSON(w, http.StatusOK, n)
		}
	}
	return notFound("no node %q", name)
}
