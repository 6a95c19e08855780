package broker

import (
	"slices"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

// newSub is a granted subscription whose retained messages are due.
type newSub struct {
	filter string
	opts   subOpts
}

// onSubscribe grants each filter of a SUBSCRIBE, answers with SUBACK, then
// sends the retained messages of the new subscriptions [MQTT-3.8.4].
func (c *conn) onSubscribe(p *packet.Subscribe) error {
	var id uint32
	if ids := p.Props.SubscriptionIDs; len(ids) > 0 {
		if !c.b.cfg.SubscriptionIdentifiers {
			return c.fail(packet.ErrSubscriptionIDsNotSupported)
		}
		id = ids[0]
	}
	codes := make([]byte, len(p.Subscriptions))
	var retained []newSub
	var undo *[]subUndo // in a cluster's persistent session: what to put back
	if c.b.cstore != nil {
		undo = new([]subUndo)
		if !c.subscribeHold() {
			for i := range codes {
				codes[i] = packet.ErrUnspecified.Value
			}
			c.sendPacket(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes})
			return nil
		}
	}
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		code, send, err := c.subscribeOne(sub, id, undo)
		if err != nil {
			return err
		}
		codes[i] = code
		if send {
			retained = append(retained, newSub{sub.Filter, subOpts{QoS: code, ID: id}})
		}
	}
	s := c.sess
	s.mu.Lock()
	if s.persistent && c.b.cstore != nil {
		s.mu.Unlock()
		c.csubscribe(p, codes, retained, *undo)
		return nil
	}
	if s.persistent {
		s.saveLocked()
	}
	s.mu.Unlock()
	c.sendPacket(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes})
	for _, ns := range retained {
		c.b.sendRetained(s, ns.filter, ns.opts)
	}
	return nil
}

// subscribeOne grants or refuses one filter, returning the SUBACK code and
// whether retained messages are due. A granted filter's change is added to
// undo when not nil.
func (c *conn) subscribeOne(sub *packet.Subscription, id uint32, undo *[]subUndo) (code byte, sendRetained bool, err error) {
	cfg := &c.b.cfg
	refuse := func(code packet.Code) (byte, bool, error) {
		if c.version != packet.V5 {
			return 0x80, false, nil // [MQTT-3.9.3-?] 3.1.1 Failure
		}
		return code.Value, false, nil
	}
	// The filter outlives the SUBSCRIBE in the session and the indexes: a
	// copy, so that it does not keep the packet's body.
	sub.Filter = strings.Clone(sub.Filter)
	group, inner, shared, err := topic.ParseShared(sub.Filter)
	if err != nil {
		return refuse(packet.ErrTopicFilterInvalid)
	}
	filter := sub.Filter
	if shared {
		if sub.NoLocal {
			return 0, false, c.fail(packet.ErrProtocolError) // [MQTT-3.8.3-4]
		}
		if !cfg.SharedSubscriptions {
			return refuse(packet.ErrSharedSubscriptionsNotSupported)
		}
		filter = inner
	}
	if err := topic.ValidFilter(filter, cfg.MaxTopicLevels); err != nil {
		return refuse(packet.ErrTopicFilterInvalid) // [MQTT-3.8.3-1]
	}
	if !cfg.WildcardSubscriptions && topic.HasWildcard(filter) {
		return refuse(packet.ErrWildcardSubscriptionsNotSupported)
	}
	if az := c.b.opts.Authorizer; az != nil {
		if err := az.CanSubscribe(c.info, sub.Filter, sub.QoS); err != nil {
			return refuse(codeOf(err, packet.ErrNotAuthorized))
		}
	}
	o := subOpts{QoS: min(sub.QoS, cfg.MaxQoS), ID: id}
	if c.version == packet.V5 {
		o.NoLocal, o.RAP, o.RH = sub.NoLocal, sub.RetainAsPublished, sub.RetainHandling
	}
	s := c.sess
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return refuse(packet.ErrUnspecified) // taken over with clean start
	}
	prev, existed := s.subs[sub.Filter]
	if !existed && cfg.MaxSubscriptionsPerClient > 0 && len(s.subs) >= cfg.MaxSubscriptionsPerClient {
		s.mu.Unlock()
		return refuse(packet.ErrQuotaExceeded)
	}
	if undo != nil {
		// A filter twice in one SUBSCRIBE: the first one's prev stays.
		if i := slices.IndexFunc(*undo, func(u subUndo) bool { return u.filter == sub.Filter }); i >= 0 {
			(*undo)[i].set = o
		} else {
			*undo = append(*undo, subUndo{filter: sub.Filter, set: o, prev: prev, existed: existed})
		}
	}
	if s.subs == nil {
		s.subs = make(map[string]subOpts)
	}
	s.subs[sub.Filter] = o
	if shared {
		c.b.shared.Subscribe(group, inner, s, o)
	} else {
		c.b.subs.Subscribe(sub.Filter, s, o) // replaces an existing one [MQTT-3.8.4-3]
	}
	s.mu.Unlock()
	for _, h := range c.b.subHooks {
		h.OnSubscribe(c.info, sub.Filter, o.QoS)
	}
	// Retained messages: not for shared subscriptions; retain handling 0
	// always, 1 only for a new subscription, 2 never [MQTT-3.3.1-9..11].
	send := !shared && (o.RH == 0 || (o.RH == 1 && !existed))
	return o.QoS, send && c.b.cfg.RetainAvailable, nil
}

// onUnsubscribe removes filters and answers with UNSUBACK [MQTT-3.10.4].
func (c *conn) onUnsubscribe(p *packet.Unsubscribe) error {
	s := c.sess
	var codes []byte
	if c.version == packet.V5 {
		codes = make([]byte, len(p.Filters))
	}
	var removed []newSub // in a cluster's persistent session: what to put back
	for i, f := range p.Filters {
		s.mu.Lock()
		o, ok := s.subs[f]
		delete(s.subs, f)
		if ok {
			c.b.indexUnsubscribe(s, f)
			if c.b.cstore != nil {
				removed = append(removed, newSub{f, o})
			}
		}
		s.mu.Unlock()
		if codes != nil && !ok {
			codes[i] = packet.NoSubscriptionExisted.Value
		}
		if ok {
			for _, h := range c.b.unsubHooks {
				h.OnUnsubscribe(c.info, f)
			}
		}
	}
	s.mu.Lock()
	if s.persistent && c.b.cstore != nil {
		s.mu.Unlock()
		c.cunsubscribe(p, codes, removed)
		return nil
	}
	if s.persistent {
		s.saveLocked()
	}
	s.mu.Unlock()
	c.sendPacket(&packet.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
	return nil
}

// indexUnsubscribe removes s's subscription to the full filter f (which may
// be a $share filter) from the indexes.
func (b *Broker) indexUnsubscribe(s *session, f string) {
	if group, inner, ok, _ := topic.ParseShared(f); ok {
		b.shared.Unsubscribe(group, inner, s)
		return
	}
	b.subs.Unsubscribe(f, s)
}

// sendRetained delivers the retained messages matching a new subscription,
// with RETAIN set [MQTT-3.3.1-9].
func (b *Broker) sendRetained(s *session, filter string, o subOpts) {
	var msgs []*Message
	b.retained.Match(filter, func(_ string, m *Message) { msgs = append(msgs, m) })
	if len(msgs) == 0 {
		return
	}
	now := time.Now().UnixNano()
	var ids []uint32
	if o.ID != 0 {
		ids = []uint32{o.ID}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		if m.expired(now) {
			b.drop(s.id, m, DropExpired)
			continue
		}
		if az := b.opts.Authorizer; az != nil && s.info != nil {
			if err := az.CanReceive(s.info, m); err != nil {
				b.drop(s.id, m, DropNotAuthorized)
				continue
			}
		}
		s.deliverLocked(outMsg{msg: m, qos: min(m.QoS, o.QoS), retain: true, subIDs: ids}, nil, nil, now)
	}
}
