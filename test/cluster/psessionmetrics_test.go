package cluster_test

import (
	"testing"

	"github.com/culexmq/culex/internal/clustertest"
)

// TestSessionMetrics: a node serves its persistent sessions' counters
// (culex_cluster_sessions_*, docs/operations.md) on /metrics: a
// persistent session's record saved and indexed, a QoS 1 message for it
// stored in the log (fails before the collector is registered).
func TestSessionMetrics(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: adminExtra})
	admin0 := adminURL(t, c.Nodes[0])
	mq := mosquittoSubSession(t, c.Nodes[0].MQTT(), "metrics-mq", "t/metrics")
	defer mq.stop()
	pub := dialV5(t, c.Nodes[0].MQTT(), "metrics-pub")
	eventually(t, "the session's subscription to be stored for", func() bool {
		publishOK(t, pub, "t/metrics", 1, "prime")
		return drained(mq.lines) && metric(t, admin0, `culex_cluster_sessions_stored_total{result="ok"}`) >= 1
	})
	for series, least := range map[string]float64{
		`culex_cluster_sessions_saves_total{result="ok"}`:                 1,
		`culex_cluster_sessions_records`:                                  1,
		`culex_cluster_sessions_saves_total{result="conflict"}`:           0,
		`culex_cluster_sessions_deletes_total{result="ok"}`:               0,
		`culex_cluster_sessions_loads_total{result="ok"}`:                 0,
		`culex_cluster_sessions_reader_skipped_total`:                     0,
		`culex_cluster_sessions_reader_lost_total`:                        0,
		`culex_cluster_sessions_writes_refused_total`:                     0,
		`culex_cluster_sessions_backlog_reads_total`:                      0,
		`culex_cluster_sessions_backlog_dropped_total`:                    0,
		`culex_cluster_sessions_writes_waiting`:                           0,
		`culex_cluster_sessions_inflight_refusals_total`:                  0,
		`culex_cluster_sessions_stuck_stepdowns_total{bucket="sessions"}`: 0,
		`culex_cluster_sessions_stuck_stepdowns_total{bucket="registry"}`: 0,
	} {
		if v := metric(t, admin0, series); v < least {
			t.Errorf("%s = %v on /metrics, want at least %v (-1: missing)", series, v, least)
		}
	}
}
