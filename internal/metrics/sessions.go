package metrics

import "github.com/prometheus/client_golang/prometheus"

// SessionStats is what a node's part of the cluster's persistent sessions
// counts (the server fills it from psession.Store.Counters; this package
// does not import the cluster).
type SessionStats struct {
	Stored, StoreFailed                    uint64
	Saves, SaveConflicts, SaveFailed       uint64
	Deletes, DeleteConflicts, DeleteFailed uint64
	Loads, LoadFailed, Swept, Busy         uint64
	ReaderLost, ReaderSkipped, Unreadable  uint64
	ReaderStarts, ReaderStops              uint64
	Backlogs, BacklogRead, BacklogDropped  uint64
	WatchUpdates, WatchUnchanged           uint64
	SharedOrphaned                         uint64
	// InFlight counts the record writes refused with JetStream's 10164;
	// Stepdowns and RegistryStepdowns the stepdowns of a bucket's leader
	// asked because it kept refusing a key so while the key was unchanged
	// (the records' bucket; the registry's buckets).
	InFlight, Stepdowns, RegistryStepdowns uint64
	Records, Waiting                       int
}

// sessionDescs lists the sessions collector's Descs.
var sessionDescs []*prometheus.Desc

func sessionDesc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("culex_cluster_sessions_"+name, help, labels, nil)
	sessionDescs = append(sessionDescs, d)
	return d
}

var (
	psStored     = sessionDesc("stored_total", "QoS 1/2 messages this node wrote to the cluster's log: ok (a majority has it), failed.", "result")
	psSaves      = sessionDesc("saves_total", "Session record saves: ok, conflict (the record was at another revision: the session moved), failed.", "result")
	psDeletes    = sessionDesc("deletes_total", "Session record deletes: ok, conflict (the record was at another revision: the session moved), failed.", "result")
	psLoads      = sessionDesc("loads_total", "Session records read and confirmed at a majority (a resuming CONNECT): ok, failed.", "result")
	psSwept      = sessionDesc("swept_total", "Expired session records this node's sweep deleted.")
	psRefused    = sessionDesc("writes_refused_total", "Writes (messages and records) failed at once: the node's write queue was full.")
	psReaderLost = sessionDesc("reader_lost_total", "Times the node's reader of the log lost its consumer and made another.")
	psReaderRun  = sessionDesc("reader_runs_total", "Times the node's reader of the log started (a persistent session of the node subscribes; none did since it stopped), and stopped (none had for 30 s).", "event")
	psSkipped    = sessionDesc("reader_skipped_total", "Messages the node's reader never delivered: the log removed them (its limits) before it could read them.")
	psUnreadable = sessionDesc("unreadable_total", "Messages of the log whose body could not be decoded.")
	psBacklogs   = sessionDesc("backlog_reads_total", "Backlogs read for resuming sessions.")
	psBacklogMsg = sessionDesc("backlog_messages_total", "Messages read by those backlogs.")
	psBacklogDr  = sessionDesc("backlog_dropped_total", "Sequences of those backlogs' ranges the log had removed (its limits): an upper bound of the messages lost, counted per session as log_limit drops.")
	psWatch      = sessionDesc("watch_updates_total", "Session record changes this node's watch of the records received (every node receives every Save and Delete).")
	psWatchSame  = sessionDesc("watch_unchanged_total", "Of those, the ones that left the node's index as it was (only the cursor or the broker's data changed, or the node's own Save).")
	psOrphaned   = sessionDesc("shared_orphaned_total", "QoS 1/2 messages published on this node for a shared subscription group whose members are all persistent sessions of dead nodes: kept for no member (once per group).")
	psInFlight   = sessionDesc("inflight_refusals_total", "Session record writes JetStream refused as if another write of the record were in flight (error 10164); tried again.")
	psStepdowns  = sessionDesc("stuck_stepdowns_total", "Times this node asked a bucket's leader to step down: it kept refusing a key's compare-and-sets with error 10164 while the key was unchanged (bucket: sessions, registry).", "bucket")
	psRecords    = sessionDesc("records", "Session records in this node's index (not deleted, not expired).")
	psWaiting    = sessionDesc("writes_waiting", "Writes queued or waiting for a majority's acknowledgement.")
)

// sessionCollector serves a psession store's counters.
type sessionCollector struct{ stats func() SessionStats }

// Sessions returns a collector of the persistent sessions' metrics
// (culex_cluster_sessions_*) read from stats at each scrape.
func Sessions(stats func() SessionStats) prometheus.Collector { return sessionCollector{stats} }

func (c sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range sessionDescs {
		ch <- d
	}
}

func (c sessionCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter{ch}
	st := c.stats()
	e.counter(psStored, float64(st.Stored), "ok")
	e.counter(psStored, float64(st.StoreFailed), "failed")
	e.counter(psSaves, float64(st.Saves), "ok")
	e.counter(psSaves, float64(st.SaveConflicts), "conflict")
	e.counter(psSaves, float64(st.SaveFailed), "failed")
	e.counter(psDeletes, float64(st.Deletes), "ok")
	e.counter(psDeletes, float64(st.DeleteConflicts), "conflict")
	e.counter(psDeletes, float64(st.DeleteFailed), "failed")
	e.counter(psLoads, float64(st.Loads), "ok")
	e.counter(psLoads, float64(st.LoadFailed), "failed")
	e.counter(psSwept, float64(st.Swept))
	e.counter(psRefused, float64(st.Busy))
	e.counter(psReaderLost, float64(st.ReaderLost))
	e.counter(psReaderRun, float64(st.ReaderStarts), "start")
	e.counter(psReaderRun, float64(st.ReaderStops), "stop")
	e.counter(psSkipped, float64(st.ReaderSkipped))
	e.counter(psUnreadable, float64(st.Unreadable))
	e.counter(psBacklogs, float64(st.Backlogs))
	e.counter(psBacklogMsg, float64(st.BacklogRead))
	e.counter(psBacklogDr, float64(st.BacklogDropped))
	e.counter(psWatch, float64(st.WatchUpdates))
	e.counter(psWatchSame, float64(st.WatchUnchanged))
	e.counter(psOrphaned, float64(st.SharedOrphaned))
	e.counter(psInFlight, float64(st.InFlight))
	e.counter(psStepdowns, float64(st.Stepdowns), "sessions")
	e.counter(psStepdowns, float64(st.RegistryStepdowns), "registry")
	e.gauge(psRecords, float64(st.Records))
	e.gauge(psWaiting, float64(st.Waiting))
}
