package cluster

// Stats is what the router counts, for the metrics.
type Stats struct {
	Forwarded uint64 // messages forwarded to other nodes
	Received  uint64 // messages other nodes forwarded here
	// ReceivedDropped counts the NATS messages of forwarded frames dropped
	// unread: this node held cluster.max_pending_bytes it had not routed.
	ReceivedDropped uint64
	Routes          int    // NATS route connections
	MetaLeader      string // JetStream meta leader as this node sees it, or ""
	Peers           []PeerStats
	// Shared subscriptions' QoS 1/2 copies this node sent to a node with
	// members (sharedtrack.go): held until that node settles them, sent
	// again, given up by reason (no_member, max_tries).
	SharedPending int
	SharedResent  uint64
	SharedDropped map[string]uint64
}

// PeerStats is one other node as the router sees it.
type PeerStats struct {
	Node     string
	Waiting  int    // QoS 1/2 messages forwarded, not yet accepted
	Timeouts uint64 // messages it did not accept within ack_timeout
	// Link is its link (link.go): "up", "down" or "nats" (batches go
	// through NATS); LinkDialsFailed counts the dials that failed.
	Link            string
	LinkDialsFailed uint64
}

// Stats returns the router's counters now.
func (r *Router) Stats() Stats {
	st := Stats{Forwarded: r.forwarded.Load(), Received: r.received.Load(), Routes: r.f.Routes(), MetaLeader: r.f.MetaLeader()}
	r.sharedStats(&st)
	if s := r.msgSub; s != nil {
		if n, err := s.Dropped(); err == nil {
			st.ReceivedDropped = uint64(n)
		}
	}
	r.mu.Lock()
	routes := make([]*nodeRoute, 0, len(r.peers))
	for _, p := range r.peers {
		if p.route != nil {
			routes = append(routes, p.route)
		}
	}
	r.mu.Unlock()
	for _, rt := range routes {
		link, fails := rt.linkState()
		rt.mu.Lock()
		st.Peers = append(st.Peers, PeerStats{Node: rt.name, Waiting: rt.waiting, Timeouts: rt.timeouts, Link: link, LinkDialsFailed: fails})
		rt.mu.Unlock()
	}
	return st
}
