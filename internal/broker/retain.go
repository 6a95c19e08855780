package broker

import "github.com/culexmq/culex/internal/mqtt/topic"

// retainedUse is what the retained messages hold, against
// MaxRetainedMessages and MaxRetainedBytes; $SYS values are the broker's
// own and do not count. Guarded by Broker.retMu.
type retainedUse struct {
	n     int
	bytes int64
}

// retainedSize is what a retained message counts towards MaxRetainedBytes.
func retainedSize(m *Message) int64 { return int64(m.size()) }

// addLocked counts m in, replacing old if had.
func (u *retainedUse) addLocked(m, old *Message, had bool) {
	if had {
		u.bytes -= retainedSize(old)
	} else {
		u.n++
	}
	u.bytes += retainedSize(m)
}

// setRetained stores m as its topic's retained message, or clears the
// topic's retained message when m's payload is empty [MQTT-3.3.1-5..7].
// retMu keeps the index and the store in the same order. At
// MaxRetainedMessages or MaxRetainedBytes a message that would add to
// them is not stored (it is still routed): counted and logged.
func (b *Broker) setRetained(m *Message, w *storeWait) {
	b.retMu.Lock()
	defer b.retMu.Unlock()
	if topic.IsSys(m.Topic) {
		if len(m.Payload) == 0 {
			b.retained.Delete(m.Topic)
		} else {
			b.retained.Set(m.Topic, m) // $SYS values are regenerated, never restored
		}
		return
	}
	// Messages another node forwarded (Forwarded) do not come here: the
	// node their client published to wrote them to the cluster.
	rep := b.opts.RetainedReplica
	if len(m.Payload) == 0 {
		b.storeRetainedLocked(m, w)
		if rep != nil {
			rep.DeleteRetained(m.Topic)
		}
		return
	}
	if old, had := b.retained.Get(m.Topic); b.retainedFullLocked(m, old, had) {
		return
	}
	b.storeRetainedLocked(m, w)
	if rep != nil {
		rep.SetRetained(m)
	}
}

// retainedFullLocked says whether storing m (replacing old if had) would
// go over a retained cap, and counts and logs the refusal: every one is
// counted, the 1st, 2nd, 4th, 8th... are logged.
func (b *Broker) retainedFullLocked(m, old *Message, had bool) bool {
	cfg := &b.cfg
	grow := retainedSize(m)
	if had {
		grow -= retainedSize(old)
	}
	full := !had && cfg.MaxRetainedMessages > 0 && b.retUse.n >= cfg.MaxRetainedMessages ||
		grow > 0 && cfg.MaxRetainedBytes > 0 && b.retUse.bytes+grow > cfg.MaxRetainedBytes
	if !full {
		return false
	}
	if n := b.stats.retainedRefused.Add(1); n&(n-1) == 0 {
		b.log.Warn("retained message not stored: mqtt.max_retained_messages or mqtt.max_retained_bytes reached",
			"topic", m.Topic, "client_id", m.Origin, "retained", b.retUse.n, "bytes", b.retUse.bytes, "refused", n)
	}
	return true
}
