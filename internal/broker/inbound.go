package broker

import (
	"context"
	"sync/atomic"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/netpoll"
	"github.com/culexmq/culex/internal/store"
)

// Pipeline states of an inbound PUBLISH. Entries are routed in receive order
// once accepted, and acknowledged in receive order once ready, whatever
// order interceptors and store writes complete in [MQTT-4.6.0-2..4].
const (
	pendIntercept uint8 = iota // waiting for the interceptors
	pendAccepted               // may be routed (or failed: code set)
	pendRouting                // routed, waiting for the store
	pendReady                  // ack may be sent
)

// pending is one inbound PUBLISH in the pipeline of its connection.
type pending struct {
	c       *conn
	w       storeWait // the store writes of its routing pass
	msg     *Message
	pid     uint16
	qos     byte
	state   uint8 // guarded by conn.pmu
	silent  bool  // a v3 client whose message failed: no ack, it retransmits
	code    packet.Code
	waiting atomic.Int32 // interceptors yet to call done
	failure atomic.Pointer[error]
}

// intercept hands pe to every interceptor; the last done accepts or fails it.
func (c *conn) intercept(pe *pending) {
	ics := c.b.opts.Interceptors
	pe.waiting.Store(int32(len(ics)))
	for _, ic := range ics {
		ic.Intercept(context.Background(), c.info, pe.msg, func(err error) {
			if err != nil {
				pe.failure.CompareAndSwap(nil, &err)
			}
			if pe.waiting.Add(-1) != 0 {
				return
			}
			c.pmu.Lock()
			if p := pe.failure.Load(); p != nil {
				pe.code = codeOf(*p, packet.ErrImplementationSpecific)
				if pe.code.Value < 0x80 {
					pe.code = packet.ErrImplementationSpecific
				}
				pe.silent = c.version != packet.V5
				c.b.drop("", pe.msg, DropIntercepted)
			}
			pe.state = pendAccepted
			c.pmu.Unlock()
			c.advance()
		})
	}
}

// advance routes accepted entries in order (one goroutine at a time) and
// sends the acknowledgements that are ready.
func (c *conn) advance() {
	c.pmu.Lock()
	if c.routing {
		c.flushAcksLocked()
		c.pmu.Unlock()
		return
	}
	c.routing = true
	for c.routeIdx < len(c.pend) && c.pend[c.routeIdx].state == pendAccepted {
		pe := c.pend[c.routeIdx]
		c.routeIdx++
		pe.state = pendRouting
		c.pmu.Unlock()
		c.routePending(pe)
		c.pmu.Lock()
	}
	c.routing = false
	c.flushAcksLocked()
	c.pmu.Unlock()
}

// routePending routes an accepted entry; it becomes ready once the store
// has every write the routing made (QoS 1/2 only wait).
func (c *conn) routePending(pe *pending) {
	if pe.code != packet.Success {
		c.ready(pe, nil)
		return
	}
	if pe.qos == 0 {
		if room := c.b.route(pe.msg, nil); room != nil {
			c.pmu.Lock()
			c.room = room
			c.roomSet.Store(true)
			c.pmu.Unlock()
		}
		c.ready(pe, nil)
		return
	}
	w := &pe.w
	w.to = pe
	w.n.Store(1)
	s := c.sess
	if pe.qos == 2 {
		s.mu.Lock()
		if s.persistent && !s.gone && c.b.cstore != nil {
			s.inQoS2[pe.pid] = in2Recorded
			s.csaveForLocked(w) // the packet id in the record before PUBREC
		} else if s.persistent && !s.gone {
			c.b.apply([]store.Op{{Kind: store.Put, Bucket: store.Messages,
				Key: store.MessageKey(s.id, inboundSeq(pe.pid)), Value: inboundMarker}}, w)
		}
		s.mu.Unlock()
	}
	c.b.route(pe.msg, w)
	w.done(nil)
}

// ready marks pe acknowledgeable. A failed write it waited for (store,
// Kafka, another node) fails the ack: the client will retransmit. A
// failed QoS 2 publish whose packet id is in its cluster session's record
// is ready once the record is saved without it (cforgetInbound).
func (c *conn) ready(pe *pending, err error) { c.readyIn(pe, err, nil) }

// readyIn is ready; the acknowledgements it sends are queued in fb when
// fb is not nil (AckBatch).
func (c *conn) readyIn(pe *pending, err error, fb *netpoll.Batch) {
	if err != nil && pe.qos == 2 && c.sess.cforgetInbound(pe.pid, func() { c.ready(pe, err) }) {
		return
	}
	c.pmu.Lock()
	if err != nil && pe.code == packet.Success {
		c.b.noteFailedAck(c.info.ClientID, err)
		pe.code, pe.silent = packet.ErrUnspecified, c.version != packet.V5
	}
	pe.state = pendReady
	c.flushAcksIn(fb)
	c.pmu.Unlock()
}

// flushAcksLocked sends the acknowledgements at the head of the pipeline
// that are ready, in receive order.
func (c *conn) flushAcksLocked() { c.flushAcksIn(nil) }

// flushAcksIn is flushAcksLocked, queueing in fb when it is not nil.
func (c *conn) flushAcksIn(fb *netpoll.Batch) {
	n := 0
	for n < len(c.pend) && n < c.routeIdx && c.pend[n].state == pendReady {
		c.ackPublish(c.pend[n], fb)
		c.pend[n] = nil
		n++
	}
	if n == 0 {
		return
	}
	c.wakeLocked()
	m := copy(c.pend, c.pend[n:])
	clear(c.pend[m:])
	c.pend = c.pend[:m]
	c.routeIdx -= n
	if m == 0 && cap(c.pend) > 16 {
		c.pend = nil // a burst's backing array is not kept while idle
	}
}

// ackPublish sends PUBACK or PUBREC for a ready entry (queued in fb when
// it is not nil); c.pmu is held.
func (c *conn) ackPublish(pe *pending, fb *netpoll.Batch) {
	switch pe.qos {
	case 1:
		c.qos1In--
		if !pe.silent {
			c.sendAckIn(packet.PUBACK, pe.pid, pe.code, fb)
		}
	case 2:
		s := c.sess
		s.mu.Lock()
		ok := pe.code == packet.Success || (c.version != packet.V5 && !pe.silent)
		switch {
		case s.gone: // ended meanwhile (clean-start takeover): nothing to keep
		case ok:
			if s.inQoS2 == nil {
				s.inQoS2 = make(map[uint16]uint8)
			}
			s.inQoS2[pe.pid] = in2Received
		default:
			delete(s.inQoS2, pe.pid)
			if s.persistent && c.b.cstore == nil {
				s.unstoreInbound(pe.pid)
			}
		}
		// A client that reconnected meanwhile has re-sent the PUBLISH and
		// waits for the PUBREC on its new connection.
		to := s.conn
		s.mu.Unlock()
		if !pe.silent && to != nil {
			to.sendAckIn(packet.PUBREC, pe.pid, pe.code, fb)
		}
	}
}

// throttle applies our Receive Maximum to clients before MQTT 5, which
// cannot be told it: while that many publishes wait in the pipeline (a slow
// interceptor or store) the reader stops reading, so the client is slowed
// down by TCP instead of growing the pipeline.
func (c *conn) throttle() {
	max := int(c.b.cfg.ReceiveMaximum)
	if c.version == packet.V5 || max == 0 {
		return
	}
	c.pmu.Lock()
	for len(c.pend) >= max && !c.sock.Kicked() {
		ch := make(chan struct{})
		c.pwait = ch
		c.pmu.Unlock()
		// This reader stops reading acknowledgements, so publishers held
		// on its queue must not wait for it (backpressure.go).
		c.throttled.Store(true)
		c.sess.releaseHolds()
		c.sock.Block(func() { <-ch })
		c.throttled.Store(false)
		c.pmu.Lock()
	}
	c.pmu.Unlock()
}

// wakeLocked releases a throttled reader.
func (c *conn) wakeLocked() {
	if c.pwait != nil {
		close(c.pwait)
		c.pwait = nil
	}
}

// inboundSeq is the Messages key sequence of an inbound QoS 2 packet id:
// above every outbound sequence.
func inboundSeq(pid uint16) uint64 { return 1<<63 | uint64(pid) }

var inboundMarker = []byte{recInbound}

func (s *session) unstoreInbound(pid uint16) {
	s.b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Messages, Key: store.MessageKey(s.id, inboundSeq(pid))}}, nil)
}
