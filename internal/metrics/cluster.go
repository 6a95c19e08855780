package metrics

import "github.com/prometheus/client_golang/prometheus"

// ClusterStats is what a cluster node's router counts (the server fills it
// from cluster.Router.Stats; this package does not import the cluster).
type ClusterStats struct {
	Forwarded, Received uint64
	ReceivedDropped     uint64 // NATS messages of forwarded frames dropped unread
	Routes              int
	MetaLeader          string
	Peers               []ClusterPeer
	// Shared subscriptions' QoS 1/2 copies sent to other nodes.
	SharedPending int
	SharedResent  uint64
	SharedDropped map[string]uint64 // by reason
}

// ClusterPeer is one other node.
type ClusterPeer struct {
	Node     string
	Waiting  int
	Timeouts uint64
	// Link is the peer's link: "up", "down" or "nats" (the peer has
	// none: batches go through NATS); LinkDialsFailed counts failed dials.
	Link            string
	LinkDialsFailed uint64
}

// clusterDescs lists the cluster collector's Descs (not in all: the node's
// Collector does not serve them).
var clusterDescs []*prometheus.Desc

func clusterDesc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("culex_cluster_"+name, help, labels, nil)
	clusterDescs = append(clusterDescs, d)
	return d
}

var (
	clForwarded = clusterDesc("messages_forwarded_total", "Messages this node forwarded to other nodes (one per node with matching subscribers).")
	clReceived  = clusterDesc("messages_received_total", "Messages other nodes forwarded to this node.")
	clRecvDrop  = clusterDesc("received_batches_dropped_total", "NATS messages of frames other nodes forwarded that this node dropped unread: it held cluster.max_pending_bytes it had not routed yet.")
	clNodesUp   = clusterDesc("nodes_up", "Nodes this node hears from, itself included.")
	clRoutes    = clusterDesc("routes", "NATS route connections of this node's embedded server.")
	clLeader    = clusterDesc("meta_leader_known", "1 when this node knows the JetStream meta leader, else 0.")
	clWaiting   = clusterDesc("ack_waiting_messages", "QoS 1/2 messages forwarded to the peer whose acceptance the publisher waits for.", "peer")
	clTimeouts  = clusterDesc("ack_timeouts_total", "Forwarded QoS 1/2 messages the peer did not accept within cluster.ack_timeout (the publisher got an error).", "peer")
	clLinkUp    = clusterDesc("link_up", "1 while this node's link to the peer is open, 0 while it is not (not dialed yet, or broken); absent for a peer reached through NATS.", "peer")
	clLinkFails = clusterDesc("link_dials_failed_total", "Dials of the peer's link that failed (unreachable, refused, or a handshake that failed: cluster.link_listen, firewall, cluster.secret).", "peer")
	clShPending = clusterDesc("shared_copies_pending", "QoS 1/2 copies for shared subscriptions this node sent to a node and holds until a member completes them.")
	clShResent  = clusterDesc("shared_copies_resent_total", "QoS 1/2 shared-subscription copies sent again to another node (returned, or their node gone).")
	clShDropped = clusterDesc("shared_copies_dropped_total", "QoS 1/2 shared-subscription copies given up: no_member (no node has members of the group any more), max_tries (returned by every node it was sent to, 8 times).", "reason")
)

// clusterCollector serves a router's counters.
type clusterCollector struct{ stats func() ClusterStats }

// Cluster returns a collector of the cluster's metrics (culex_cluster_*)
// read from stats at each scrape; register it with the node's registry.
// Peer labels are node names: as many as the cluster has nodes.
func Cluster(stats func() ClusterStats) prometheus.Collector { return clusterCollector{stats} }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range clusterDescs {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch}
	st := c.stats()
	e.counter(clForwarded, float64(st.Forwarded))
	e.counter(clReceived, float64(st.Received))
	e.counter(clRecvDrop, float64(st.ReceivedDropped))
	e.gauge(clNodesUp, float64(len(st.Peers)+1))
	e.gauge(clRoutes, float64(st.Routes))
	known := 0.0
	if st.MetaLeader != "" {
		known = 1
	}
	e.gauge(clLeader, known)
	for _, p := range st.Peers {
		e.gauge(clWaiting, float64(p.Waiting), p.Node)
		e.counter(clTimeouts, float64(p.Timeouts), p.Node)
		if p.Link != "nats" && p.Link != "" {
			up := 0.0
			if p.Link == "up" {
				up = 1
			}
			e.gauge(clLinkUp, up, p.Node)
			e.counter(clLinkFails, float64(p.LinkDialsFailed), p.Node)
		}
	}
	e.gauge(clShPending, float64(st.SharedPending))
	e.counter(clShResent, float64(st.SharedResent))
	for reason, n := range st.SharedDropped {
		e.counter(clShDropped, float64(n), reason)
	}
}
