package broker

import (
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/netpoll"
)

// deliverLocked hands one copy of a message to the session: QoS 0 straight
// to the connection (or dropped when offline), QoS 1/2 into the in-flight
// window when it has room and nothing is queued ahead [MQTT-4.6.0], else
// into the bounded queue. Persistent sessions store QoS 1/2 copies, with w
// waiting for the write.
func (s *session) deliverLocked(om outMsg, sc *scratch, w *storeWait, now int64) {
	if s.gone {
		return
	}
	c := s.conn
	if om.qos == 0 {
		if c == nil {
			s.b.drop(s.id, om.msg, DropOffline)
			return
		}
		c.sendPublish(&om, sc, now)
		return
	}
	p := new(outMsg)
	*p = om
	s.seq++
	p.seq = s.seq
	if c != nil && s.qlenLocked() == 0 && len(s.inflight) < s.window(c) && !c.overBound() {
		if s.persistent && (p.qos == 2 || s.cwaitingLocked()) {
			s.sendDurableLocked(p, w)
			return
		}
		if s.sendNewLocked(c, p, sc, now) && s.persistent {
			s.storeLocked(p, w)
		}
		return
	}
	s.enqueueLocked(p, w)
	s.holdLocked(c, w)
}

// sendPublish encodes and queues a PUBLISH of om. It returns false when the
// copy was dropped: over the client's Maximum Packet Size, or QoS 0 over the
// outbound byte bound. A closed connection is not a drop: QoS 1/2 stay in
// flight and are re-sent on the next connection.
func (c *conn) sendPublish(om *outMsg, sc *scratch, now int64) bool {
	return c.writePublish(om, false, sc, now)
}

// resendPublish re-sends an in-flight message with DUP set [MQTT-3.3.1-1].
func (c *conn) resendPublish(om *outMsg, now int64) {
	c.writePublish(om, true, nil, now)
}

func (c *conn) writePublish(om *outMsg, dup bool, sc *scratch, now int64) bool {
	m := om.msg
	shareable := sc != nil && om.qos == 0 && len(om.subIDs) == 0 && c.aliasMax == 0
	var hdr []byte
	if shareable {
		hdr = sc.header(c.version, om.retain)
	}
	var alias uint16
	var newAlias bool
	if hdr == nil {
		p := packet.Publish{Dup: dup, QoS: om.qos, Retain: om.retain, Topic: m.Topic, PacketID: om.pid, Payload: m.Payload}
		if c.version == packet.V5 {
			if m.Props != nil {
				p.Props = *m.Props
			}
			if rem, ok := m.remaining(now); ok {
				p.Props.MessageExpiry = rem // [MQTT-3.3.2-6]
				p.Props.Set(packet.PropMessageExpiry)
			}
			p.Props.SubscriptionIDs = om.subIDs // [MQTT-3.3.4-3]
			if c.aliasMax > 0 {
				alias, newAlias = c.outboundAlias(&p)
			}
		}
		var err error
		if sc != nil {
			if sc.arena == nil {
				// Sized for this header at least: appended from nil it was
				// allocated twice (fixed header, then topic).
				sc.arena = make([]byte, 0, max(sc.arenaHint, len(m.Topic)+16))
			}
			start := len(sc.arena)
			sc.arena, err = p.EncodeHeader(sc.arena, c.version)
			if err == nil {
				hdr = sc.arena[start:len(sc.arena):len(sc.arena)]
			}
		} else {
			hdr, err = p.EncodeHeader(nil, c.version)
		}
		if err != nil {
			c.b.log.Error("encode publish", "client", c.info.ClientID, "err", err)
			c.b.drop(c.info.ClientID, m, DropInvalid)
			return false
		}
		if shareable {
			sc.setHeader(c.version, om.retain, hdr)
		}
	}
	if c.maxPacket > 0 && len(hdr)+len(m.Payload) > int(c.maxPacket) {
		c.b.drop(c.info.ClientID, m, DropPacketTooLarge) // [MQTT-3.1.2-25]
		return false
	}
	if !c.enqueueIn(hdr, m.Payload, om.qos == 0, sc) {
		if om.qos == 0 && !c.isClosed() {
			c.b.drop(c.info.ClientID, m, DropOutboundFull)
			return false
		}
		return true
	}
	if newAlias { // only once the client is sure to see the mapping
		c.commitAlias(m.Topic, alias)
	}
	c.b.stats.publishesOut[om.qos&3].Add(1)
	return true
}

func (c *conn) isClosed() bool {
	return c.sock.Closing()
}

// outboundAlias picks the Topic Alias for p: a topic aliased on this
// connection is sent as the alias alone; a new topic gets the next alias
// while the client's Topic Alias Maximum allows, and then the least recently
// used one, sent with the topic name, which remaps it for the client
// [MQTT-3.3.2-12]. The caller commits a new alias (commitAlias) only once
// the packet is sure to be queued. c.outAlias is guarded by the session's mu.
func (c *conn) outboundAlias(p *packet.Publish) (alias uint16, isNew bool) {
	if a, ok := c.outAlias.lookup(p.Topic); ok {
		p.Props.TopicAlias = a
		p.Props.Set(packet.PropTopicAlias)
		p.Topic = ""
		return a, false
	}
	a := c.outAlias.pick(c.aliasMax)
	p.Props.TopicAlias = a
	p.Props.Set(packet.PropTopicAlias)
	return a, true
}

func (c *conn) commitAlias(topic string, a uint16) { c.outAlias.commit(topic, a) }

// outAliases are the Topic Aliases assigned on one connection, in an LRU
// list: head is the most recently used, tail the one a new topic replaces.
// Aliases are 1-based; 0 ends the list.
type outAliases struct {
	byTopic    map[string]uint16
	topic      []string // by alias-1
	prev, next []uint16 // by alias-1
	head, tail uint16
}

// lookup returns topic's alias, marking it the most recently used.
func (l *outAliases) lookup(topic string) (uint16, bool) {
	a, ok := l.byTopic[topic]
	if ok {
		l.unlink(a)
		l.pushFront(a)
	}
	return a, ok
}

// pick returns the alias a new topic gets: the next one while fewer than
// max are taken, else the least recently used.
func (l *outAliases) pick(max uint16) uint16 {
	if len(l.topic) < int(max) {
		return uint16(len(l.topic) + 1)
	}
	return l.tail
}

// commit binds alias a (from pick) to topic.
func (l *outAliases) commit(topic string, a uint16) {
	if l.byTopic == nil {
		l.byTopic = make(map[string]uint16)
	}
	if int(a) > len(l.topic) {
		l.topic = append(l.topic, topic)
		l.prev = append(l.prev, 0)
		l.next = append(l.next, 0)
	} else {
		delete(l.byTopic, l.topic[a-1])
		l.topic[a-1] = topic
		l.unlink(a)
	}
	l.byTopic[topic] = a
	l.pushFront(a)
}

func (l *outAliases) unlink(a uint16) {
	p, n := l.prev[a-1], l.next[a-1]
	if p != 0 {
		l.next[p-1] = n
	} else {
		l.head = n
	}
	if n != 0 {
		l.prev[n-1] = p
	} else {
		l.tail = p
	}
	l.prev[a-1], l.next[a-1] = 0, 0
}

func (l *outAliases) pushFront(a uint16) {
	l.prev[a-1], l.next[a-1] = 0, l.head
	if l.head != 0 {
		l.prev[l.head-1] = a
	} else {
		l.tail = a
	}
	l.head = a
}

// sendAck queues PUBACK, PUBREC, PUBREL or PUBCOMP; code is sent to v5
// clients only, with a reason string for failures when allowed.
func (c *conn) sendAck(kind packet.Type, pid uint16, code packet.Code) {
	c.sendAckIn(kind, pid, code, nil)
}

// sendAckIn is sendAck, queueing in fb when it is not nil (AckBatch).
func (c *conn) sendAckIn(kind packet.Type, pid uint16, code packet.Code, fb *netpoll.Batch) {
	a := packet.Ack{Kind: kind, PacketID: pid}
	if c.version == packet.V5 {
		a.ReasonCode = code.Value
		if code.Value >= 0x80 {
			c.reasonString(&a.Props, code)
		}
	}
	b, err := a.Encode(make([]byte, 0, 4), c.version) // the common size
	if err != nil {
		c.b.log.Error("encode ack", "err", err)
		return
	}
	c.sock.Enqueue(b, nil, false, fb)
}
