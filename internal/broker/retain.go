package broker

import (
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/culexmq/culex/internal/store"
)

// setRetained stores m as its topic's retained message, or clears the
// topic's retained message when m's payload is empty [MQTT-3.3.1-5..7].
// retMu keeps the index and the store in the same order.
func (b *Broker) setRetained(m *Message, w *storeWait) {
	b.retMu.Lock()
	defer b.retMu.Unlock()
	if len(m.Payload) == 0 {
		if b.retained.Delete(m.Topic) && !topic.IsSys(m.Topic) {
			b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Retained, Key: m.Topic}}, w)
		}
		return
	}
	b.retained.Set(m.Topic, m)
	if topic.IsSys(m.Topic) {
		return // $SYS values are regenerated, never restored
	}
	b.apply([]store.Op{{Kind: store.Put, Bucket: store.Retained, Key: m.Topic, Value: encodeMessage(m)}}, w)
}
