package packet

import "fmt"

// Decode decodes a PUBLISH body into p for version v. Topic, Payload and
// the properties alias body; without User Properties or Subscription
// Identifiers it allocates nothing.
func (p *Publish) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Publish{}
	if err := checkHeader(fh, body, PUBLISH, v); err != nil {
		return err
	}
	p.Dup = fh.Flags&0x08 != 0
	p.QoS = fh.Flags >> 1 & 3
	p.Retain = fh.Flags&0x01 != 0
	r := reader{b: body}
	p.Topic = r.str("publish topic name")
	if p.QoS > 0 {
		p.PacketID = r.u16("publish packet identifier")
		if r.err == nil && p.PacketID == 0 {
			return protocolError("publish qos %d with packet identifier 0 [MQTT-2.2.1-3]", p.QoS)
		}
	}
	if v == V5 {
		p.Props.decode(&r, PUBLISH)
	}
	p.Payload = r.rest()
	if r.err != nil {
		return r.err
	}
	return p.checkTopic(v)
}

// checkTopic rejects an empty topic name, which version 5 allows only with a
// Topic Alias [MQTT-3.3.2.3.4] and earlier versions never [MQTT-4.7.3-1].
func (p *Publish) checkTopic(v Version) error {
	if p.Topic == "" && (v != V5 || !p.Props.Has(PropTopicAlias)) {
		return protocolError("publish with an empty topic name and no topic alias [MQTT-4.7.3-1]")
	}
	return nil
}

// flags is the low nibble of the PUBLISH first byte.
func (p *Publish) flags() byte {
	f := p.QoS & 3 << 1
	if p.Dup {
		f |= 0x08
	}
	if p.Retain {
		f |= 0x01
	}
	return f
}

// headerSize returns the length of everything after the fixed header but
// the payload, and the length of the properties.
func (p *Publish) headerSize(v Version) (hdr, props int, err error) {
	if err := checkVersion(v); err != nil {
		return 0, 0, err
	}
	if p.QoS > 3 {
		return 0, 0, malformed("publish qos %d does not fit in two bits", p.QoS)
	}
	s := sizer{}
	s.str("topic name", len(p.Topic))
	if p.QoS > 0 {
		s.n += 2
	}
	if v == V5 {
		if props, err = p.Props.size(PUBLISH); err != nil {
			return 0, 0, err
		}
		s.n += VarintSize(props) + props
	}
	return s.n, props, s.err
}

// Size returns the length of the whole encoded PUBLISH for version v, to
// check against a Maximum Packet Size [MQTT-3.1.2-24] before encoding. It is
// exact for a packet that Encode accepts and a lower bound otherwise.
func (p *Publish) Size(v Version) int {
	hdr, _, err := p.headerSize(v)
	if err != nil {
		hdr = 2 + len(p.Topic)
	}
	rl := hdr + len(p.Payload)
	return 1 + VarintSize(rl) + rl
}

// EncodeHeader appends every byte of the PUBLISH except the payload; the
// Remaining Length counts the payload, so writing the result followed by
// p.Payload sends the whole packet. Subscribers share the payload slice.
func (p *Publish) EncodeHeader(dst []byte, v Version) ([]byte, error) {
	hdr, props, err := p.headerSize(v)
	if err != nil {
		return dst, fmt.Errorf("encode PUBLISH: %w", err)
	}
	rl := hdr + len(p.Payload)
	if rl > MaxRemainingLength {
		return dst, fmt.Errorf("encode PUBLISH: remaining length %d: %w", rl, ErrPacketTooLarge)
	}
	dst = appendFixedHeader(dst, PUBLISH, p.flags(), rl)
	dst = appendStr(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendU16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Props.appendTo(dst, props, PUBLISH)
	}
	return dst, nil
}

// Encode appends the whole PUBLISH for version v.
func (p *Publish) Encode(dst []byte, v Version) ([]byte, error) {
	dst, err := p.EncodeHeader(dst, v)
	if err != nil {
		return dst, err
	}
	return append(dst, p.Payload...), nil
}
