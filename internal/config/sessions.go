package config

import "time"

// ClusterSessions bounds the cluster's log of the messages persistent
// sessions are owed (internal/cluster/psession): past either limit its
// oldest messages are removed, and a session that had not received them
// counts them as dropped (reason log_limit).
type ClusterSessions struct {
	// MaxLogBytes bounds the log's size on each core (default 1 GiB).
	MaxLogBytes int64 `yaml:"max_log_bytes"`
	// MaxLogAge bounds how long a message stays in the log (default 7
	// days, mqtt.max_session_expiry's default: keep it at least that).
	MaxLogAge time.Duration `yaml:"max_log_age"`
}

func defaultClusterSessions() ClusterSessions {
	return ClusterSessions{MaxLogBytes: 1 << 30, MaxLogAge: 7 * 24 * time.Hour}
}

func (s *ClusterSessions) validate(bad func(key, format string, args ...any)) {
	if s.MaxLogBytes < 1<<20 {
		bad("cluster.sessions.max_log_bytes", "%d must be at least 1048576 (1 MiB; default 1073741824, 1 GiB)", s.MaxLogBytes)
	}
	if s.MaxLogAge < time.Minute {
		bad("cluster.sessions.max_log_age", "%v must be at least 1m (default 168h, 7 days)", s.MaxLogAge)
	}
}
