package kafka

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the end-to-end latency histogram
// (MQTT receive to Kafka ack); the last bucket is everything above.
var latencyBounds = [...]time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 5 * time.Second, 30 * time.Second,
}

// RouteStats are one route's counters. Fields are updated atomically; read
// them through Bridge.Stats.
type RouteStats struct {
	Name string
	// Matched counts messages that matched the route.
	Matched atomic.Int64
	// Produced counts records Kafka acked; Failed those it did not (or that
	// could not be mapped or buffered).
	Produced atomic.Int64
	Failed   atomic.Int64
	// Expired counts kafka-mode publishes failed back to the device (0x80)
	// because Kafka did not ack within the produce timeout; their records
	// stay queued and are produced when Kafka answers.
	Expired atomic.Int64
	// InFlight is records handed to the producer and not yet acked or failed.
	InFlight atomic.Int64
	// AckedNotInKafka is messages acknowledged to the device whose record
	// Kafka has not acked yet: zero by construction in ack mode kafka.
	AckedNotInKafka atomic.Int64
	// ReservedDropped counts MQTT user properties left out of records'
	// headers because their name is in the broker's mqtt.* namespace.
	ReservedDropped atomic.Int64
	// SpoolBytes is the route's bytes in the disk spool (ack: spool) not
	// yet in Kafka; its spooled entry count is AckedNotInKafka.
	SpoolBytes atomic.Int64
	// Latency counts acked records by MQTT-receive-to-Kafka-ack latency,
	// bucketed by latencyBounds (one extra bucket for the rest).
	Latency [len(latencyBounds) + 1]atomic.Int64
	// LatencySum is the total latency of the acked records (nanoseconds).
	LatencySum atomic.Int64

	// lastErr is the cause of the latest failed or expired publish, for
	// the periodic failure summary.
	lastErr atomic.Pointer[string]
}

// fail counts a failed record and keeps its cause.
func (s *RouteStats) fail(err error) {
	s.Failed.Add(1)
	msg := err.Error()
	s.lastErr.Store(&msg)
}

// expire counts a publish failed back to its device for time.
func (s *RouteStats) expire(err error) {
	s.Expired.Add(1)
	msg := err.Error()
	s.lastErr.Store(&msg)
}

func (s *RouteStats) lastError() string {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *RouteStats) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	s.Latency[i].Add(1)
	s.LatencySum.Add(int64(d))
}

// RouteSnapshot is a copy of one route's counters.
type RouteSnapshot struct {
	Name                                                          string
	Matched, Produced, Failed, Expired, InFlight, AckedNotInKafka int64
	// SpoolBytes and SpoolAge (the oldest spooled entry in flight to Kafka)
	// are zero for routes without ack: spool.
	SpoolBytes int64
	SpoolAge   time.Duration
	// ReservedDropped: see RouteStats.ReservedDropped.
	ReservedDropped int64
	// LatencyBounds and Latency are the histogram: Latency[i] counts acks
	// at or under LatencyBounds[i]; the last entry counts the rest.
	LatencyBounds []time.Duration
	Latency       []int64
	// LatencySum is the total latency of the records in Latency.
	LatencySum time.Duration
}

func (s *RouteStats) snapshot() RouteSnapshot {
	r := RouteSnapshot{
		Name: s.Name, Matched: s.Matched.Load(), Produced: s.Produced.Load(),
		Failed: s.Failed.Load(), Expired: s.Expired.Load(), SpoolBytes: s.SpoolBytes.Load(), InFlight: s.InFlight.Load(), AckedNotInKafka: s.AckedNotInKafka.Load(),
		LatencyBounds: latencyBounds[:], ReservedDropped: s.ReservedDropped.Load(),
		LatencySum: time.Duration(s.LatencySum.Load()),
	}
	for i := range s.Latency {
		r.Latency = append(r.Latency, s.Latency[i].Load())
	}
	return r
}
