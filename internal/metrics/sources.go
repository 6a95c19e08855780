package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/bridge/kafka"
	"github.com/culexmq/culex/internal/store"
)

var (
	logins         = desc("auth_logins_total", "Logins by the backend that decided them (users, jwt, http, cert, scram; anonymous: let in without credentials; none: no backend answered) and result (success, failure).", "backend", "result")
	backendErrors  = desc("auth_backend_errors_total", "Authentication backends that failed to answer (webhook down, JWKS unreachable, ...).")
	bannedLogins   = desc("auth_banned_logins_total", "Logins refused because their address is banned.")
	newBans        = desc("auth_bans_total", "Addresses banned after failed logins.")
	bansNow        = desc("auth_bans", "Addresses banned now (kind=address) and usernames whose logins are slowed now (kind=username).", "kind")
	throttled      = desc("auth_throttled_logins_total", "Logins delayed because of their username's failed logins.")
	aclDenied      = desc("acl_denials_total", "Publishes, subscriptions and deliveries denied by the ACL.")
	revoked        = desc("auth_revoked_total", "Clients disconnected because a users or ACL reload withdrew their rights.")
	credExpired    = desc("auth_credential_expired_total", "Clients disconnected when their credential (a JWT) expired.")
	reloadFailures = desc("auth_reload_failures_total", "Users or ACL file loads that failed; the previous version stays in force.")

	kMatched    = desc("kafka_matched_total", "MQTT messages that matched a Kafka route.", "route")
	kProduced   = desc("kafka_produced_total", "Records Kafka acknowledged.", "route")
	kFailed     = desc("kafka_failed_total", "Records Kafka did not take (or that could not be mapped or buffered).", "route")
	kExpired    = desc("kafka_expired_total", "kafka-mode publishes failed back to the device because Kafka did not ack within kafka.produce_timeout (the record stays queued).", "route")
	kInFlight   = desc("kafka_in_flight_records", "Records handed to the producer and not yet acked or failed.", "route")
	kAckedNot   = desc("kafka_acked_not_in_kafka_messages", "Messages acknowledged to devices whose record Kafka has not acked yet (ack: spool or none).", "route")
	kSpoolBytes = desc("kafka_spool_bytes", "Bytes of the route's records in the disk spool, not yet in Kafka.", "route")
	kSpoolAge   = desc("kafka_spool_oldest_age_seconds", "Age of the route's oldest spooled record in flight to Kafka.", "route")
	kReserved   = desc("kafka_reserved_headers_dropped_total", "MQTT user properties left out of record headers because their name is in the mqtt.* namespace.", "route")
	kLatency    = desc("kafka_produce_latency_seconds", "Time from MQTT receive to Kafka ack of the acknowledged records.", "route")

	cConsumed      = desc("kafka_command_consumed_total", "Kafka records consumed by a command route.", "route")
	cPublished     = desc("kafka_command_published_total", "Kafka records published into MQTT.", "route")
	cInvalid       = desc("kafka_command_invalid_total", "Kafka records skipped because their MQTT topic could not be rendered or was refused.", "route")
	cCommitted     = desc("kafka_command_commits_total", "Offset commits that succeeded.", "route")
	cStalled       = desc("kafka_command_stalled_partitions", "Partitions stopped now on a record a session's full queue refused.", "route")
	cStalls        = desc("kafka_command_stalls_total", "Partition stalls begun.", "route")
	cUndeliverable = desc("kafka_command_undeliverable_total", "Stalled records committed without a session's copy (the session expired, or kafka.commands[].max_stall passed).", "route")

	spoolEntries = desc("kafka_spool_entries", "Spooled records acknowledged to devices and not yet in Kafka (all routes).")
	spoolStuck   = desc("kafka_spool_stuck_entries", "Spooled records Kafka refused and those queued behind them on the same topics; retried, never dropped.")

	storeCommits    = desc("store_commits_total", "Successful write transactions of the durable store.")
	storeFailed     = desc("store_failed_commits_total", "Write transactions of the durable store that failed and were rolled back.")
	storeCommitTime = desc("store_commit_seconds_total", "Time spent in successful commits, fsyncs included.")
	storeOps        = desc("store_ops_total", "Operations written by successful commits.")
	storeBytes      = desc("store_written_bytes_total", "Key and value bytes written by successful commits.")
	storeLastCommit = desc("store_last_commit_seconds", "Duration of the latest commit, failed or not.")
)

func collectAuth(e emitter, a *auth.Service) {
	s := a.Stats()
	keys, counts := s.ByBackend.Counts()
	for i, k := range keys {
		e.counter(logins, float64(counts[i]), k.Backend, k.Result)
	}
	e.counter(backendErrors, float64(s.BackendErrors.Load()))
	e.counter(bannedLogins, float64(s.Banned.Load()))
	e.counter(newBans, float64(s.NewBans.Load()))
	e.counter(throttled, float64(s.Throttled.Load()))
	e.counter(aclDenied, float64(s.Denied.Load()))
	e.counter(revoked, float64(s.Revoked.Load()))
	e.counter(credExpired, float64(s.Expired.Load()))
	e.counter(reloadFailures, float64(s.ReloadFailures.Load()))
	addrs, users := a.Limiter().Bans()
	e.gauge(bansNow, float64(addrs), "address")
	e.gauge(bansNow, float64(users), "username")
}

func collectKafka(e emitter, k *kafka.Bridge) {
	for _, r := range k.Stats() {
		n := r.Name
		e.counter(kMatched, float64(r.Matched), n)
		e.counter(kProduced, float64(r.Produced), n)
		e.counter(kFailed, float64(r.Failed), n)
		e.counter(kExpired, float64(r.Expired), n)
		e.gauge(kInFlight, float64(r.InFlight), n)
		e.gauge(kAckedNot, float64(r.AckedNotInKafka), n)
		e.gauge(kSpoolBytes, float64(r.SpoolBytes), n)
		e.gauge(kSpoolAge, r.SpoolAge.Seconds(), n)
		e.counter(kReserved, float64(r.ReservedDropped), n)
		e.ch <- latencyHistogram(r)
	}
	for _, c := range k.CommandStats() {
		n := c.Name
		e.counter(cConsumed, float64(c.Consumed), n)
		e.counter(cPublished, float64(c.Published), n)
		e.counter(cInvalid, float64(c.Invalid), n)
		e.counter(cCommitted, float64(c.Committed), n)
		e.gauge(cStalled, float64(c.Stalled), n)
		e.counter(cStalls, float64(c.Stalls), n)
		e.counter(cUndeliverable, float64(c.Undeliverable), n)
	}
	sp := k.SpoolStats()
	e.gauge(spoolEntries, float64(sp.Entries))
	e.gauge(spoolStuck, float64(sp.Stuck))
}

// latencyHistogram turns a route's latency buckets (each counting its own
// range) into a cumulative Prometheus histogram.
func latencyHistogram(r kafka.RouteSnapshot) prometheus.Metric {
	buckets := make(map[float64]uint64, len(r.LatencyBounds))
	var cum uint64
	for i, b := range r.LatencyBounds {
		cum += uint64(r.Latency[i])
		buckets[b.Seconds()] = cum
	}
	cum += uint64(r.Latency[len(r.Latency)-1])
	return prometheus.MustNewConstHistogram(kLatency, cum, r.LatencySum.Seconds(), buckets, r.Name)
}

func collectStore(e emitter, s store.Stats) {
	e.counter(storeCommits, float64(s.Commits))
	e.counter(storeFailed, float64(s.FailedCommits))
	e.counter(storeCommitTime, s.CommitTime.Seconds())
	e.counter(storeOps, float64(s.Ops))
	e.counter(storeBytes, float64(s.Bytes))
	e.gauge(storeLastCommit, s.LastCommit.Seconds())
}
