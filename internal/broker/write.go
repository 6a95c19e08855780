package broker

import (
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// enqueue queues a packet (hdr followed by payload, which may be nil) for
// the socket (netpoll.Conn.Enqueue). With bounded set it refuses (returning
// false) when the queue is over the outbound byte bound. It never blocks
// on the socket.
func (c *conn) enqueue(hdr, payload []byte, bounded bool) bool {
	return c.sock.Enqueue(hdr, payload, bounded, nil)
}

// enqueueIn is enqueue within a routing pass (sc not nil), which hands the
// connections it gives to the flush queue over in batches.
func (c *conn) enqueueIn(hdr, payload []byte, bounded bool, sc *scratch) bool {
	if sc == nil {
		return c.enqueue(hdr, payload, bounded)
	}
	return c.sock.Enqueue(hdr, payload, bounded, &sc.flush)
}

// send queues a control packet; it is never dropped for the byte bound.
func (c *conn) send(b []byte) { c.enqueue(b, nil, false) }

// sendPacket encodes p for the connection's version and queues it.
func (c *conn) sendPacket(p packet.Packet) {
	b, err := p.Encode(nil, c.version)
	if err != nil {
		c.b.log.Error("encode", "type", p.Type(), "client", c.info.ClientID, "err", err)
		return
	}
	c.send(b)
}

// overBound reports whether the outbound queue is at its byte bound, noting
// that a QoS 1/2 message waits so that the session is pumped when it
// drains (Drained).
func (c *conn) overBound() bool { return c.sock.OverBound() }

// sendDisconnect queues a v5 DISCONNECT with code [MQTT-4.13.2-1]. The
// socket then closes gracefully, so that a client still writing reads it.
func (c *conn) sendDisconnect(code packet.Code) {
	d := &packet.Disconnect{ReasonCode: code.Value}
	c.reasonString(&d.Props, code)
	if ref := c.b.drainRef.Load(); ref != nil && code == packet.ErrUseAnotherServer {
		d.Props.ServerReference = *ref // drain.go
		d.Props.Set(packet.PropServerReference)
	}
	b, err := d.Encode(nil, packet.V5)
	if err == nil {
		c.sock.Linger()
		c.send(b)
	}
}

// reasonString sets a Reason String from code when the client allows
// problem information [MQTT-3.1.2-29].
func (c *conn) reasonString(p *packet.Properties, code packet.Code) {
	if c.problem && code.Reason != "" {
		p.ReasonString = code.Reason
		p.Set(packet.PropReasonString)
	}
}
