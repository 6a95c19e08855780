package broker

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/culexmq/culex/internal/store"
)

// Inbound QoS 2 states in session.inQoS2.
const (
	in2Held     uint8 = 1 // received, PUBREC not yet sent
	in2Received uint8 = 2 // PUBREC sent, waiting for PUBREL
	// in2Recorded: as in2Held, in a cluster's session record (saved
	// before its PUBREC); records leave in2Held ids out.
	in2Recorded uint8 = 3
)

// onPublish validates an inbound PUBLISH and feeds it to the pipeline.
func (c *conn) onPublish(p *packet.Publish) error {
	if err := c.resolveAlias(p); err != nil {
		return err
	}
	cfg := &c.b.cfg
	if err := topic.ValidName(p.Topic, cfg.MaxTopicLevels); err != nil {
		return c.fail(packet.ErrTopicNameInvalid) // [MQTT-3.3.2-2]
	}
	if p.QoS > cfg.MaxQoS {
		return c.fail(packet.ErrQoSNotSupported) // [MQTT-3.2.2-11]
	}
	if p.Retain && !cfg.RetainAvailable {
		if c.version == packet.V5 {
			return c.fail(packet.ErrRetainNotSupported) // [MQTT-3.2.2-14]
		}
		p.Retain = false
	}
	if p.QoS > 0 {
		if dup, err := c.inboundSlot(p); dup || err != nil {
			return err
		}
	}
	code := c.checkPublish(p)
	m := c.newMessage(p)
	if code != packet.Success {
		c.b.drop("", m, reasonFor(code))
	}
	intercept := code == packet.Success && len(c.b.opts.Interceptors) > 0
	if p.QoS == 0 && !intercept {
		c.pmu.Lock()
		inline := c.routeIdx == len(c.pend) // nothing waits to be routed ahead of it
		c.pmu.Unlock()
		if inline {
			if code == packet.Success {
				c.waitRoom(c.b.route(m, nil))
			}
			return nil
		}
	}
	pe := &pending{c: c, msg: m, pid: p.PacketID, qos: p.QoS, code: code, state: pendAccepted}
	if intercept {
		pe.state = pendIntercept
	}
	c.pmu.Lock()
	if p.QoS == 1 {
		c.qos1In++
	}
	c.pend = append(c.pend, pe)
	c.pmu.Unlock()
	if pe.state == pendIntercept {
		c.intercept(pe)
	}
	c.advance()
	c.throttle()
	if c.roomSet.Load() {
		c.pmu.Lock()
		room := c.room
		c.room = nil
		c.roomSet.Store(false)
		c.pmu.Unlock()
		c.waitRoom(room)
	}
	return nil
}

// inboundSlot enforces our Receive Maximum [MQTT-3.3.4-9] and detects a
// QoS 2 retransmission, which is acknowledged again but not routed again
// [MQTT-4.3.3-10].
func (c *conn) inboundSlot(p *packet.Publish) (dup bool, err error) {
	s := c.sess
	c.pmu.Lock()
	n := c.qos1In
	c.pmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.QoS == 2 {
		switch s.inQoS2[p.PacketID] {
		case in2Received:
			c.sendAck(packet.PUBREC, p.PacketID, packet.Success)
			return true, nil
		case in2Held, in2Recorded:
			return true, nil // its PUBREC is on the way
		}
	}
	if c.version == packet.V5 && n+len(s.inQoS2) >= int(c.b.cfg.ReceiveMaximum) && c.b.cfg.ReceiveMaximum > 0 {
		return false, c.fail(packet.ErrReceiveMaximumExceeded)
	}
	if p.QoS == 2 {
		if s.inQoS2 == nil {
			s.inQoS2 = make(map[uint16]uint8)
		}
		s.inQoS2[p.PacketID] = in2Held
	}
	return false, nil
}

// checkPublish applies the refusals that are answered with a reason code
// rather than a disconnect. Clients may not publish to $ topics (they are the
// broker's: $SYS), which is answered as not authorized [MQTT-4.7.2].
func (c *conn) checkPublish(p *packet.Publish) packet.Code {
	if topic.IsSys(p.Topic) {
		return packet.ErrNotAuthorized
	}
	if az := c.b.opts.Authorizer; az != nil {
		if err := az.CanPublish(c.info, p.Topic, p.QoS, p.Retain); err != nil {
			return codeOf(err, packet.ErrNotAuthorized)
		}
	}
	if c.version == packet.V5 && p.Props.Has(packet.PropPayloadFormat) && p.Props.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		return packet.ErrPayloadFormatInvalid // [MQTT-3.3.2-4]
	}
	return packet.Success
}

func reasonFor(code packet.Code) DropReason {
	switch code {
	case packet.ErrNotAuthorized:
		return DropNotAuthorized
	case packet.ErrPayloadFormatInvalid:
		return DropInvalid
	}
	return DropIntercepted
}

// resolveAlias applies the client's Topic Alias [MQTT-3.3.2-7..12].
func (c *conn) resolveAlias(p *packet.Publish) error {
	if c.version != packet.V5 || !p.Props.Has(packet.PropTopicAlias) {
		return nil
	}
	a := p.Props.TopicAlias
	if a == 0 || a > c.b.cfg.MaxTopicAlias {
		return c.fail(packet.ErrTopicAliasInvalid) // [MQTT-3.2.2-17], [MQTT-3.3.2-8]
	}
	if p.Topic == "" {
		t, ok := c.inAlias[a]
		if !ok {
			return c.fail(packet.ErrProtocolError)
		}
		p.Topic = t
		return nil
	}
	if c.inAlias == nil {
		c.inAlias = make(map[uint16]string)
	}
	// The topics of one connection's aliases hold at most MaxPacketSize
	// bytes, whatever MaxTopicAlias allows.
	n := c.aliasLen - len(c.inAlias[a]) + len(p.Topic)
	if max := int(c.b.cfg.MaxPacketSize); max > 0 && n > max {
		return c.fail(packet.ErrQuotaExceeded)
	}
	c.aliasLen = n
	// A copy: p.Topic aliases the packet's body, which the alias would
	// otherwise keep (payload and all) for the life of the connection.
	c.inAlias[a] = strings.Clone(p.Topic)
	return nil
}

// newMessage makes the routed message of an inbound PUBLISH; it aliases the
// packet's body.
func (c *conn) newMessage(p *packet.Publish) *Message {
	m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Origin: c.info.ClientID}
	if c.version == packet.V5 {
		m.Props = messageProps(&p.Props)
		if p.Props.Has(packet.PropMessageExpiry) {
			m.Expiry = time.Now().Add(time.Duration(p.Props.MessageExpiry) * time.Second).UnixNano()
		}
	}
	if max := c.b.cfg.MaxMessageExpiry; max > 0 {
		limit := time.Now().Add(max).UnixNano()
		if m.Expiry == 0 || m.Expiry > limit {
			m.Expiry = limit
		}
	}
	return m
}

// onAck handles the acknowledgements a client sends.
func (c *conn) onAck(p *packet.Ack) error {
	s := c.sess
	switch p.Kind {
	case packet.PUBACK:
		s.onPuback(c, p.PacketID)
	case packet.PUBREC:
		s.onPubrec(c, p.PacketID, p.ReasonCode)
	case packet.PUBREL:
		c.onPubrel(p.PacketID)
	case packet.PUBCOMP:
		s.onPubcomp(c, p.PacketID)
	}
	return nil
}

// onPubrel ends an inbound QoS 2 flow: the packet id is forgotten and
// PUBCOMP sent [MQTT-4.3.3-11,12].
func (c *conn) onPubrel(pid uint16) {
	s := c.sess
	s.mu.Lock()
	if s.inQoS2[pid] != in2Received {
		s.mu.Unlock()
		c.sendAck(packet.PUBCOMP, pid, packet.ErrPacketIDNotFound)
		return
	}
	delete(s.inQoS2, pid)
	if s.persistent && !s.gone && c.b.cstore != nil {
		// PUBCOMP once the record without the packet id is saved.
		s.csaveLocked(func(error) { c.sendAck(packet.PUBCOMP, pid, packet.Success) })
		s.mu.Unlock()
		return
	}
	if s.persistent && !s.gone {
		// PUBCOMP once the packet id is durably forgotten: until then the
		// client cannot reuse it for a new message that a restarted broker
		// would take for a retransmission [MQTT-4.3.3].
		_, sync := s.b.applyThen([]store.Op{{Kind: store.Delete, Bucket: store.Messages,
			Key: store.MessageKey(s.id, inboundSeq(pid))}}, func(err error) {
			s.b.logStoreErr(err)
			s.mu.Lock()
			to := s.conn
			s.mu.Unlock()
			if to != nil {
				to.sendAck(packet.PUBCOMP, pid, packet.Success)
			}
		})
		s.mu.Unlock()
		if sync {
			// The store failed inside Apply (closed): then never runs.
			c.sendAck(packet.PUBCOMP, pid, packet.Success)
		}
		return
	}
	s.mu.Unlock()
	c.sendAck(packet.PUBCOMP, pid, packet.Success)
}
