package packet

import (
	"fmt"
	"math/bits"
)

// willCtx indexes allowedProps for Will Properties, which are not a packet
// type of their own (type 0 is reserved, so the slot is free).
const willCtx Type = 0

// maxSubscriptionID is the largest Subscription Identifier [MQTT-3.3.2.3.8].
const maxSubscriptionID = MaxRemainingLength

func pb(id PropID) uint64 { return 1 << id }

// allowedProps is, per packet type, the set of properties it may carry
// (MQTT 5.0 table 2-4); a property outside its packet's set is a Malformed
// Packet [MQTT-2.2.2.2].
var allowedProps = [16]uint64{
	willCtx: pb(PropPayloadFormat) | pb(PropMessageExpiry) | pb(PropContentType) | pb(PropResponseTopic) |
		pb(PropCorrelationData) | pb(PropWillDelay) | pb(PropUser),
	CONNECT: pb(PropSessionExpiry) | pb(PropAuthMethod) | pb(PropAuthData) | pb(PropRequestProblemInfo) |
		pb(PropRequestResponseInfo) | pb(PropReceiveMaximum) | pb(PropTopicAliasMaximum) | pb(PropUser) |
		pb(PropMaximumPacketSize),
	CONNACK: pb(PropSessionExpiry) | pb(PropAssignedClientID) | pb(PropServerKeepAlive) | pb(PropAuthMethod) |
		pb(PropAuthData) | pb(PropResponseInfo) | pb(PropServerReference) | pb(PropReasonString) |
		pb(PropReceiveMaximum) | pb(PropTopicAliasMaximum) | pb(PropMaximumQoS) | pb(PropRetainAvailable) |
		pb(PropUser) | pb(PropMaximumPacketSize) | pb(PropWildcardSubAvailable) | pb(PropSubIDAvailable) |
		pb(PropSharedSubAvailable),
	PUBLISH: pb(PropPayloadFormat) | pb(PropMessageExpiry) | pb(PropContentType) | pb(PropResponseTopic) |
		pb(PropCorrelationData) | pb(PropSubscriptionID) | pb(PropTopicAlias) | pb(PropUser),
	PUBACK:      pb(PropReasonString) | pb(PropUser),
	PUBREC:      pb(PropReasonString) | pb(PropUser),
	PUBREL:      pb(PropReasonString) | pb(PropUser),
	PUBCOMP:     pb(PropReasonString) | pb(PropUser),
	SUBSCRIBE:   pb(PropSubscriptionID) | pb(PropUser),
	SUBACK:      pb(PropReasonString) | pb(PropUser),
	UNSUBSCRIBE: pb(PropUser),
	UNSUBACK:    pb(PropReasonString) | pb(PropUser),
	DISCONNECT:  pb(PropSessionExpiry) | pb(PropServerReference) | pb(PropReasonString) | pb(PropUser),
	AUTH:        pb(PropAuthMethod) | pb(PropAuthData) | pb(PropReasonString) | pb(PropUser),
}

var propNames = [...]string{
	PropPayloadFormat:        "payload format indicator",
	PropMessageExpiry:        "message expiry interval",
	PropContentType:          "content type",
	PropResponseTopic:        "response topic",
	PropCorrelationData:      "correlation data",
	PropSubscriptionID:       "subscription identifier",
	PropSessionExpiry:        "session expiry interval",
	PropAssignedClientID:     "assigned client identifier",
	PropServerKeepAlive:      "server keep alive",
	PropAuthMethod:           "authentication method",
	PropAuthData:             "authentication data",
	PropRequestProblemInfo:   "request problem information",
	PropWillDelay:            "will delay interval",
	PropRequestResponseInfo:  "request response information",
	PropResponseInfo:         "response information",
	PropServerReference:      "server reference",
	PropReasonString:         "reason string",
	PropReceiveMaximum:       "receive maximum",
	PropTopicAliasMaximum:    "topic alias maximum",
	PropTopicAlias:           "topic alias",
	PropMaximumQoS:           "maximum qos",
	PropRetainAvailable:      "retain available",
	PropUser:                 "user property",
	PropMaximumPacketSize:    "maximum packet size",
	PropWildcardSubAvailable: "wildcard subscription available",
	PropSubIDAvailable:       "subscription identifier available",
	PropSharedSubAvailable:   "shared subscription available",
}

// String returns the property's name as the spec writes it, in lower case.
func (id PropID) String() string {
	if int(id) < len(propNames) && propNames[id] != "" {
		return propNames[id]
	}
	return fmt.Sprintf("property 0x%02x", byte(id))
}

func ctxName(ctx Type) string {
	if ctx == willCtx {
		return "will"
	}
	return ctx.String()
}

// repeatable reports whether id may appear more than once in ctx: User
// Property anywhere, Subscription Identifier only in PUBLISH.
func repeatable(id PropID, ctx Type) bool {
	return id == PropUser || (id == PropSubscriptionID && ctx == PUBLISH)
}

// decode reads a property length and the properties it covers into p,
// checking each is known, allowed in ctx, not repeated when it may appear
// once, and in range.
func (p *Properties) decode(r *reader, ctx Type) {
	*p = Properties{}
	n := r.varint("property length")
	if r.err != nil {
		return
	}
	if n > r.left() {
		r.fail(malformed("%s property length %d overruns the packet", ctxName(ctx), n))
		return
	}
	end := r.off + n
	pr := reader{b: r.b[:end], off: r.off}
	for pr.err == nil && pr.off < end {
		p.decodeOne(&pr, ctx)
	}
	if pr.err != nil {
		r.fail(pr.err)
		return
	}
	r.off = end
}

func (p *Properties) decodeOne(r *reader, ctx Type) {
	id := PropID(r.u8("property identifier"))
	if r.err != nil {
		return
	}
	if id >= 64 || allowedProps[ctx]&pb(id) == 0 {
		r.fail(malformed("%v not allowed in %s properties [MQTT-2.2.2.2]", id, ctxName(ctx)))
		return
	}
	if p.Present&pb(id) != 0 && !repeatable(id, ctx) {
		r.fail(protocolError("%v more than once in %s properties", id, ctxName(ctx)))
		return
	}
	p.Present |= pb(id)
	name := propNames[id]
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = r.flag(id)
	case PropMessageExpiry:
		p.MessageExpiry = r.u32(name)
	case PropContentType:
		p.ContentType = r.str(name)
	case PropResponseTopic:
		p.ResponseTopic = r.str(name)
	case PropCorrelationData:
		p.CorrelationData = r.bin(name)
	case PropSubscriptionID:
		sid := r.varint(name)
		if r.err == nil && sid == 0 {
			r.fail(protocolError("subscription identifier 0 [MQTT-3.8.2.1.2] [MQTT-3.3.2.3.8]"))
		}
		p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(sid))
	case PropSessionExpiry:
		p.SessionExpiry = r.u32(name)
	case PropAssignedClientID:
		p.AssignedClientID = r.str(name)
	case PropServerKeepAlive:
		p.ServerKeepAlive = r.u16(name)
	case PropAuthMethod:
		p.AuthMethod = r.str(name)
	case PropAuthData:
		p.AuthData = r.bin(name)
	case PropRequestProblemInfo:
		p.RequestProblemInfo = r.flag(id)
	case PropWillDelay:
		p.WillDelay = r.u32(name)
	case PropRequestResponseInfo:
		p.RequestResponseInfo = r.flag(id)
	case PropResponseInfo:
		p.ResponseInfo = r.str(name)
	case PropServerReference:
		p.ServerReference = r.str(name)
	case PropReasonString:
		p.ReasonString = r.str(name)
	case PropReceiveMaximum:
		p.ReceiveMaximum = r.nonzero16(id)
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = r.u16(name)
	case PropTopicAlias:
		p.TopicAlias = r.u16(name)
		if r.err == nil && p.TopicAlias == 0 {
			r.fail(fmt.Errorf("topic alias 0: %w", ErrTopicAliasInvalid)) // [MQTT-3.3.2-8]
		}
	case PropMaximumQoS:
		p.MaximumQoS = r.flag(id)
	case PropRetainAvailable:
		p.RetainAvailable = r.flag(id)
	case PropUser:
		k := r.str("user property name")
		v := r.str("user property value")
		p.User = append(p.User, UserProperty{Key: k, Value: v})
	case PropMaximumPacketSize:
		p.MaximumPacketSize = r.u32(name)
		if r.err == nil && p.MaximumPacketSize == 0 {
			r.fail(protocolError("maximum packet size 0"))
		}
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = r.flag(id)
	case PropSubIDAvailable:
		p.SubIDAvailable = r.flag(id)
	case PropSharedSubAvailable:
		p.SharedSubAvailable = r.flag(id)
	}
}

// flag reads a byte property whose only values are 0 and 1.
func (r *reader) flag(id PropID) byte {
	c := r.u8(propNames[id])
	if r.err == nil && c > 1 {
		r.fail(protocolError("%v is %d, not 0 or 1", id, c))
	}
	return c
}

// nonzero16 reads a two-byte property for which 0 is a Protocol Error.
func (r *reader) nonzero16(id PropID) uint16 {
	v := r.u16(propNames[id])
	if r.err == nil && v == 0 {
		r.fail(protocolError("%v 0", id))
	}
	return v
}

// present is Present plus a bit for every non-empty string, byte slice and
// list: the set of properties that encode emits.
func (p *Properties) present() uint64 {
	m := p.Present
	if p.ContentType != "" {
		m |= pb(PropContentType)
	}
	if p.ResponseTopic != "" {
		m |= pb(PropResponseTopic)
	}
	if len(p.CorrelationData) > 0 {
		m |= pb(PropCorrelationData)
	}
	if len(p.SubscriptionIDs) > 0 {
		m |= pb(PropSubscriptionID)
	}
	if p.AssignedClientID != "" {
		m |= pb(PropAssignedClientID)
	}
	if p.AuthMethod != "" {
		m |= pb(PropAuthMethod)
	}
	if len(p.AuthData) > 0 {
		m |= pb(PropAuthData)
	}
	if p.ResponseInfo != "" {
		m |= pb(PropResponseInfo)
	}
	if p.ServerReference != "" {
		m |= pb(PropServerReference)
	}
	if p.ReasonString != "" {
		m |= pb(PropReasonString)
	}
	if len(p.User) > 0 {
		m |= pb(PropUser)
	}
	return m
}

// Empty reports whether p holds no property at all.
func (p *Properties) Empty() bool { return p.present() == 0 }

// size returns the length of p's encoding in ctx, without the property
// length in front. Properties that ctx cannot carry are left out, so that
// properties can be passed from one packet to another: a will's properties
// become its PUBLISH's without the Will Delay Interval, for one.
func (p *Properties) size(ctx Type) (int, error) {
	m := p.present() & allowedProps[ctx]
	if m == 0 {
		return 0, nil
	}
	s := sizer{}
	for ; m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		s.n++ // identifier
		switch id {
		case PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
			PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable:
			s.n++
		case PropServerKeepAlive, PropReceiveMaximum, PropTopicAliasMaximum, PropTopicAlias:
			s.n += 2
		case PropMessageExpiry, PropSessionExpiry, PropWillDelay, PropMaximumPacketSize:
			s.n += 4
		case PropContentType:
			s.str(propNames[id], len(p.ContentType))
		case PropResponseTopic:
			s.str(propNames[id], len(p.ResponseTopic))
		case PropCorrelationData:
			s.str(propNames[id], len(p.CorrelationData))
		case PropAssignedClientID:
			s.str(propNames[id], len(p.AssignedClientID))
		case PropAuthMethod:
			s.str(propNames[id], len(p.AuthMethod))
		case PropAuthData:
			s.str(propNames[id], len(p.AuthData))
		case PropResponseInfo:
			s.str(propNames[id], len(p.ResponseInfo))
		case PropServerReference:
			s.str(propNames[id], len(p.ServerReference))
		case PropReasonString:
			s.str(propNames[id], len(p.ReasonString))
		case PropSubscriptionID:
			s.n-- // one identifier byte per value, counted below
			for _, sid := range p.SubscriptionIDs {
				if sid > maxSubscriptionID {
					return 0, malformed("subscription identifier %d over %d", sid, maxSubscriptionID)
				}
				s.n += 1 + VarintSize(int(sid))
			}
		case PropUser:
			s.n-- // one identifier byte per pair, counted below
			for _, u := range p.User {
				s.n++
				s.str("user property name", len(u.Key))
				s.str("user property value", len(u.Value))
			}
		}
	}
	return s.n, s.err
}

// appendTo appends the property length n (from size) and the properties
// that ctx can carry.
func (p *Properties) appendTo(dst []byte, n int, ctx Type) []byte {
	dst = AppendVarint(dst, n)
	if n == 0 {
		return dst
	}
	for m := p.present() & allowedProps[ctx]; m != 0; m &= m - 1 {
		id := PropID(bits.TrailingZeros64(m))
		switch id {
		case PropPayloadFormat:
			dst = append(dst, byte(id), p.PayloadFormat)
		case PropMessageExpiry:
			dst = appendU32(append(dst, byte(id)), p.MessageExpiry)
		case PropContentType:
			dst = appendStr(append(dst, byte(id)), p.ContentType)
		case PropResponseTopic:
			dst = appendStr(append(dst, byte(id)), p.ResponseTopic)
		case PropCorrelationData:
			dst = appendBin(append(dst, byte(id)), p.CorrelationData)
		case PropSubscriptionID:
			for _, sid := range p.SubscriptionIDs {
				dst = AppendVarint(append(dst, byte(id)), int(sid))
			}
		case PropSessionExpiry:
			dst = appendU32(append(dst, byte(id)), p.SessionExpiry)
		case PropAssignedClientID:
			dst = appendStr(append(dst, byte(id)), p.AssignedClientID)
		case PropServerKeepAlive:
			dst = appendU16(append(dst, byte(id)), p.ServerKeepAlive)
		case PropAuthMethod:
			dst = appendStr(append(dst, byte(id)), p.AuthMethod)
		case PropAuthData:
			dst = appendBin(append(dst, byte(id)), p.AuthData)
		case PropRequestProblemInfo:
			dst = append(dst, byte(id), p.RequestProblemInfo)
		case PropWillDelay:
			dst = appendU32(append(dst, byte(id)), p.WillDelay)
		case PropRequestResponseInfo:
			dst = append(dst, byte(id), p.RequestResponseInfo)
		case PropResponseInfo:
			dst = appendStr(append(dst, byte(id)), p.ResponseInfo)
		case PropServerReference:
			dst = appendStr(append(dst, byte(id)), p.ServerReference)
		case PropReasonString:
			dst = appendStr(append(dst, byte(id)), p.ReasonString)
		case PropReceiveMaximum:
			dst = appendU16(append(dst, byte(id)), p.ReceiveMaximum)
		case PropTopicAliasMaximum:
			dst = appendU16(append(dst, byte(id)), p.TopicAliasMaximum)
		case PropTopicAlias:
			dst = appendU16(append(dst, byte(id)), p.TopicAlias)
		case PropMaximumQoS:
			dst = append(dst, byte(id), p.MaximumQoS)
		case PropRetainAvailable:
			dst = append(dst, byte(id), p.RetainAvailable)
		case PropUser:
			for _, u := range p.User {
				dst = appendStr(appendStr(append(dst, byte(id)), u.Key), u.Value)
			}
		case PropMaximumPacketSize:
			dst = appendU32(append(dst, byte(id)), p.MaximumPacketSize)
		case PropWildcardSubAvailable:
			dst = append(dst, byte(id), p.WildcardSubAvailable)
		case PropSubIDAvailable:
			dst = append(dst, byte(id), p.SubIDAvailable)
		case PropSharedSubAvailable:
			dst = append(dst, byte(id), p.SharedSubAvailable)
		}
	}
	return dst
}
