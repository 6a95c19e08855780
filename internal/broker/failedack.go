package broker

import (
	"sync/atomic"
	"time"
)

// failedAcks summarises publishes that were not acknowledged because a
// write they waited for failed (the store, a Kafka route, another node of
// the cluster): one line a second at most, with the count since the last,
// so a failing node or disk does not turn every publish into a log line.
type failedAcks struct {
	last  atomic.Int64 // unix nanoseconds of the last line
	count atomic.Int64 // failures not yet logged
}

func (b *Broker) noteFailedAck(clientID string, err error) {
	f := &b.failedAcks
	f.count.Add(1)
	now := time.Now().UnixNano()
	last := f.last.Load()
	if now-last < int64(time.Second) || !f.last.CompareAndSwap(last, now) {
		return
	}
	n := f.count.Swap(0)
	b.log.Warn("publish not acknowledged: a write it waited for failed; the client sends it again",
		"client", clientID, "err", err, "failed_since_last_line", n)
}
