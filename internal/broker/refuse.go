package broker

import (
	"sync/atomic"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// RefuseHook is told of each CONNECT refused with a CONNACK reason code
// (bad credentials, a ban, mqtt.max_connections, mqtt.max_sessions, ...),
// including those a 3.1.1 client has no return code for and sees only a
// close. c holds what the CONNECT said by then: ClientID and Username may
// be empty. It runs on the connection's goroutine at connect rate.
type RefuseHook interface {
	OnRefuse(c *ClientInfo, code packet.Code)
}

// refusals counts refused CONNECTs by reason code.
type refusals [256]atomic.Uint64

// refused counts a refused CONNECT and tells the hooks.
func (b *Broker) refused(c *ClientInfo, code packet.Code) {
	b.refusedBy[code.Value].Add(1)
	for _, h := range b.refuseHooks {
		h.OnRefuse(c, code)
	}
}

// Refused returns the CONNECTs refused so far, by reason code (only codes
// seen at least once). The map is new for each call.
func (b *Broker) Refused() map[packet.Code]uint64 {
	out := make(map[packet.Code]uint64)
	for v := range b.refusedBy {
		if n := b.refusedBy[v].Load(); n > 0 {
			out[packet.CodeOf(byte(v))] = n
		}
	}
	return out
}
