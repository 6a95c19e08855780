package server

import (
	"github.com/culexmq/culex/internal/admin"
	"github.com/culexmq/culex/internal/cluster"
	"github.com/culexmq/culex/internal/cluster/psession"
	"github.com/culexmq/culex/internal/metrics"
)

// clusterAdmin makes the admin API cover every node of the cluster: the
// node's name from cluster.node_name, its role, address, readiness and
// leader in GET /nodes, and the other nodes reached through the router.
func (s *Server) clusterAdmin(opts *admin.Options) {
	if s.router == nil {
		return
	}
	opts.NodeName = s.fabric.NodeName()
	opts.Peers = s.router
	opts.Describe = func(n *admin.Node) {
		st := s.router.Status()
		n.Role, n.Address, n.Ready, n.MetaLeader = st.Role, st.Address, st.Ready, st.MetaLeader
	}
}

// serveClusterAdmin answers the other nodes' admin requests, and
// registers the cluster's metrics.
func (s *Server) serveClusterAdmin() error {
	if s.router == nil {
		return nil
	}
	if s.admin != nil {
		if _, err := s.router.ServeAsk(s.admin.Answer); err != nil {
			return err
		}
	}
	if err := s.RegisterMetrics(metrics.Cluster(func() metrics.ClusterStats { return clusterStats(s.router.Stats()) })); err != nil {
		return err
	}
	if s.state == nil {
		return nil
	}
	return s.RegisterMetrics(metrics.Sessions(func() metrics.SessionStats {
		st := sessionStats(s.state.sess.Counters())
		st.RegistryStepdowns = s.state.reg.Stepdowns()
		return st
	}))
}

func sessionStats(c psession.Counters) metrics.SessionStats {
	return metrics.SessionStats{Stored: c.Stored, StoreFailed: c.StoreFailed,
		Saves: c.Saves, SaveConflicts: c.SaveConflicts, SaveFailed: c.SaveFailed,
		Deletes: c.Deletes, DeleteConflicts: c.DeleteConflicts, DeleteFailed: c.DeleteFailed,
		Loads: c.Loads, LoadFailed: c.LoadFailed, Swept: c.Swept, Busy: c.Busy,
		ReaderLost: c.ReaderLost, ReaderSkipped: c.Skipped, Unreadable: c.Unreadable,
		ReaderStarts: c.ReaderStarts, ReaderStops: c.ReaderStops,
		Backlogs: c.Backlogs, BacklogRead: c.BacklogRead, BacklogDropped: c.BacklogDropped,
		WatchUpdates: c.WatchUpdates, WatchUnchanged: c.WatchUnchanged, SharedOrphaned: c.SharedOrphaned,
		InFlight: c.InFlight, Stepdowns: c.Stepdowns,
		Records: c.Records, Waiting: c.Waiting}
}

func clusterStats(st cluster.Stats) metrics.ClusterStats {
	out := metrics.ClusterStats{Forwarded: st.Forwarded, Received: st.Received, ReceivedDropped: st.ReceivedDropped, Routes: st.Routes,
		MetaLeader: st.MetaLeader, SharedPending: st.SharedPending, SharedResent: st.SharedResent, SharedDropped: st.SharedDropped}
	for _, p := range st.Peers {
		out.Peers = append(out.Peers, metrics.ClusterPeer{Node: p.Node, Waiting: p.Waiting, Timeouts: p.Timeouts, Link: p.Link, LinkDialsFailed: p.LinkDialsFailed})
	}
	return out
}
