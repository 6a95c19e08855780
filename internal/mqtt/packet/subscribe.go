package packet

import (
	"fmt"
	"strings"
)

// countEntries counts the length-prefixed strings in b, each followed by
// extra bytes, so that a decoder allocates its list once. It stops at the
// first entry that does not fit; the decoder reports that one.
func countEntries(b []byte, extra int) int {
	n := 0
	for len(b) >= 2 {
		l := 2 + (int(b[0])<<8 | int(b[1])) + extra
		if l > len(b) {
			return n + 1
		}
		b = b[l:]
		n++
	}
	return n + len(b) // a dangling byte is one more (truncated) entry
}

// decodeIDAndProps reads the packet identifier, checking that it is not 0
// when nonzero is set [MQTT-2.2.1-3], and in version 5 the properties.
func decodeIDAndProps(r *reader, t Type, v Version, props *Properties, nonzero bool) uint16 {
	id := r.u16("packet identifier")
	if r.err == nil && nonzero && id == 0 {
		r.fail(protocolError("%v with packet identifier 0 [MQTT-2.2.1-3]", t))
	}
	if v == V5 {
		props.decode(r, t)
	}
	return id
}

// Decode decodes a SUBSCRIBE body into p for version v.
func (p *Subscribe) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Subscribe{}
	if err := checkHeader(fh, body, SUBSCRIBE, v); err != nil {
		return err
	}
	r := reader{b: body}
	p.PacketID = decodeIDAndProps(&r, SUBSCRIBE, v, &p.Props, true)
	if r.err != nil {
		return r.err
	}
	if r.left() == 0 {
		return protocolError("subscribe without topic filters [MQTT-3.8.3-3]")
	}
	p.Subscriptions = make([]Subscription, 0, countEntries(body[r.off:], 1))
	for r.err == nil && r.left() > 0 {
		filter := r.str("subscribe topic filter")
		opts := r.u8("subscription options")
		if r.err != nil {
			break
		}
		s, err := subscriptionFrom(filter, opts, v)
		if err != nil {
			return err
		}
		p.Subscriptions = append(p.Subscriptions, s)
	}
	return r.err
}

// subscriptionFrom checks and unpacks a Subscription Options byte.
func subscriptionFrom(filter string, opts byte, v Version) (Subscription, error) {
	s := Subscription{Filter: filter, QoS: opts & 3}
	if v != V5 {
		if opts&^3 != 0 {
			return s, malformed("subscription options %08b: reserved bits set [MQTT-3.8.3-4]", opts)
		}
	} else {
		if opts&0xc0 != 0 {
			return s, malformed("subscription options %08b: reserved bits set [MQTT-3.8.3-5]", opts)
		}
		s.NoLocal = opts&0x04 != 0
		s.RetainAsPublished = opts&0x08 != 0
		s.RetainHandling = opts >> 4 & 3
		if s.RetainHandling == 3 {
			return s, protocolError("subscription retain handling 3 [MQTT-3.8.3.1]")
		}
		if s.NoLocal && strings.HasPrefix(filter, "$share/") {
			return s, protocolError("no local on shared subscription %q [MQTT-3.8.3-4]", filter)
		}
	}
	if s.QoS == 3 {
		return s, malformed("subscription qos 3 [MQTT-3.8.3-4]")
	}
	return s, nil
}

// options packs s into a Subscription Options byte for version v.
func (s *Subscription) options(v Version) (byte, error) {
	if s.QoS > 3 {
		return 0, malformed("subscription %q qos %d does not fit in two bits", s.Filter, s.QoS)
	}
	o := s.QoS
	if v != V5 {
		return o, nil
	}
	if s.RetainHandling > 3 {
		return 0, malformed("subscription %q retain handling %d does not fit in two bits", s.Filter, s.RetainHandling)
	}
	if s.NoLocal {
		o |= 0x04
	}
	if s.RetainAsPublished {
		o |= 0x08
	}
	return o | s.RetainHandling<<4, nil
}

// sizeIDAndProps is the length of a packet identifier and, in version 5,
// the properties for t; props is the properties' own length.
func sizeIDAndProps(t Type, v Version, p *Properties) (s sizer, props int, err error) {
	if err := checkVersion(v); err != nil {
		return s, 0, fmt.Errorf("encode %v: %w", t, err)
	}
	s.n = 2
	if v == V5 {
		if props, err = p.size(t); err != nil {
			return s, 0, fmt.Errorf("encode %v: %w", t, err)
		}
		s.n += VarintSize(props) + props
	}
	return s, props, nil
}

// appendIDAndProps appends the packet identifier and, in version 5, the
// properties.
func appendIDAndProps(dst []byte, t Type, id uint16, v Version, p *Properties, props int) []byte {
	dst = appendU16(dst, id)
	if v == V5 {
		dst = p.appendTo(dst, props, t)
	}
	return dst
}

// Encode appends the SUBSCRIBE for version v.
func (p *Subscribe) Encode(dst []byte, v Version) ([]byte, error) {
	s, props, err := sizeIDAndProps(SUBSCRIBE, v, &p.Props)
	if err != nil {
		return dst, err
	}
	for i := range p.Subscriptions {
		if _, err := p.Subscriptions[i].options(v); err != nil {
			return dst, fmt.Errorf("encode SUBSCRIBE: %w", err)
		}
		s.str("topic filter", len(p.Subscriptions[i].Filter))
		s.n++
	}
	if dst, err = finish(dst, SUBSCRIBE, 0x02, &s); err != nil {
		return dst, err
	}
	dst = appendIDAndProps(dst, SUBSCRIBE, p.PacketID, v, &p.Props, props)
	for i := range p.Subscriptions {
		o, _ := p.Subscriptions[i].options(v)
		dst = append(appendStr(dst, p.Subscriptions[i].Filter), o)
	}
	return dst, nil
}

// Decode decodes a SUBACK body into p for version v. ReasonCodes aliases body.
func (p *Suback) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Suback{}
	if err := checkHeader(fh, body, SUBACK, v); err != nil {
		return err
	}
	r := reader{b: body}
	p.PacketID = decodeIDAndProps(&r, SUBACK, v, &p.Props, false)
	p.ReasonCodes = r.rest()
	if r.err != nil {
		return r.err
	}
	if len(p.ReasonCodes) == 0 {
		return protocolError("suback without reason codes [MQTT-3.9.3-1]")
	}
	for _, c := range p.ReasonCodes {
		if err := checkReason(SUBACK, c, v); err != nil {
			return err
		}
	}
	return nil
}

// Encode appends the SUBACK for version v. Before version 5 a code other
// than a granted QoS is sent as 0x80, the only failure code 3.1.1 has.
func (p *Suback) Encode(dst []byte, v Version) ([]byte, error) {
	s, props, err := sizeIDAndProps(SUBACK, v, &p.Props)
	if err != nil {
		return dst, err
	}
	s.n += len(p.ReasonCodes)
	if dst, err = finish(dst, SUBACK, 0, &s); err != nil {
		return dst, err
	}
	dst = appendIDAndProps(dst, SUBACK, p.PacketID, v, &p.Props, props)
	if v == V5 {
		return append(dst, p.ReasonCodes...), nil
	}
	for _, c := range p.ReasonCodes {
		if c > 2 {
			c = 0x80
		}
		dst = append(dst, c)
	}
	return dst, nil
}

// Decode decodes an UNSUBSCRIBE body into p for version v.
func (p *Unsubscribe) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Unsubscribe{}
	if err := checkHeader(fh, body, UNSUBSCRIBE, v); err != nil {
		return err
	}
	r := reader{b: body}
	p.PacketID = decodeIDAndProps(&r, UNSUBSCRIBE, v, &p.Props, true)
	if r.err != nil {
		return r.err
	}
	if r.left() == 0 {
		return protocolError("unsubscribe without topic filters [MQTT-3.10.3-2]")
	}
	p.Filters = make([]string, 0, countEntries(body[r.off:], 0))
	for r.err == nil && r.left() > 0 {
		p.Filters = append(p.Filters, r.str("unsubscribe topic filter"))
	}
	return r.err
}

// Encode appends the UNSUBSCRIBE for version v.
func (p *Unsubscribe) Encode(dst []byte, v Version) ([]byte, error) {
	s, props, err := sizeIDAndProps(UNSUBSCRIBE, v, &p.Props)
	if err != nil {
		return dst, err
	}
	for _, f := range p.Filters {
		s.str("topic filter", len(f))
	}
	if dst, err = finish(dst, UNSUBSCRIBE, 0x02, &s); err != nil {
		return dst, err
	}
	dst = appendIDAndProps(dst, UNSUBSCRIBE, p.PacketID, v, &p.Props, props)
	for _, f := range p.Filters {
		dst = appendStr(dst, f)
	}
	return dst, nil
}

// Decode decodes an UNSUBACK body into p for version v. ReasonCodes aliases
// body; before version 5 there are none [MQTT-3.11.3].
func (p *Unsuback) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Unsuback{}
	if err := checkHeader(fh, body, UNSUBACK, v); err != nil {
		return err
	}
	r := reader{b: body}
	p.PacketID = decodeIDAndProps(&r, UNSUBACK, v, &p.Props, false)
	if v != V5 {
		return r.end("unsuback")
	}
	p.ReasonCodes = r.rest()
	if r.err != nil {
		return r.err
	}
	if len(p.ReasonCodes) == 0 {
		return protocolError("unsuback without reason codes [MQTT-3.11.3-2]")
	}
	for _, c := range p.ReasonCodes {
		if err := checkReason(UNSUBACK, c, v); err != nil {
			return err
		}
	}
	return nil
}

// Encode appends the UNSUBACK for version v; before version 5 it is the
// packet identifier alone.
func (p *Unsuback) Encode(dst []byte, v Version) ([]byte, error) {
	s, props, err := sizeIDAndProps(UNSUBACK, v, &p.Props)
	if err != nil {
		return dst, err
	}
	if v == V5 {
		s.n += len(p.ReasonCodes)
	}
	if dst, err = finish(dst, UNSUBACK, 0, &s); err != nil {
		return dst, err
	}
	dst = appendIDAndProps(dst, UNSUBACK, p.PacketID, v, &p.Props, props)
	if v == V5 {
		dst = append(dst, p.ReasonCodes...)
	}
	return dst, nil
}
