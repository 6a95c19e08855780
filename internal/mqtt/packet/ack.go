package packet

import "fmt"

// isAck reports whether t is PUBACK, PUBREC, PUBREL or PUBCOMP.
func isAck(t Type) bool { return t >= PUBACK && t <= PUBCOMP }

// ackFlags is the fixed-header flags of an ack: 0010 for PUBREL [MQTT-3.6.1-1].
func ackFlags(t Type) byte {
	if t == PUBREL {
		return 0x02
	}
	return 0
}

// Decode decodes a PUBACK, PUBREC, PUBREL or PUBCOMP body into p; p.Kind
// is taken from fh. In version 5 the reason code and properties may be
// omitted [MQTT-3.4.2.1]: a 2-byte body is Success without properties, a
// 3-byte body a reason code without properties.
func (p *Ack) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Ack{Kind: fh.Type}
	if !isAck(fh.Type) {
		return fmt.Errorf("decode ack: fixed header is %v: %w", fh.Type, ErrProtocolError)
	}
	if err := checkHeader(fh, body, fh.Type, v); err != nil {
		return err
	}
	r := reader{b: body}
	p.PacketID = r.u16("packet identifier")
	if v == V5 && r.left() > 0 {
		p.ReasonCode = r.u8("reason code")
		if r.left() > 0 {
			p.Props.decode(&r, p.Kind)
		}
	}
	if err := r.end(p.Kind.String()); err != nil {
		return err
	}
	return checkReason(p.Kind, p.ReasonCode, v)
}

// Encode appends the ack for version v. Before version 5 it is the packet
// identifier alone; in version 5 Success without properties takes the same
// short form, and a reason code without properties omits the property length.
func (p *Ack) Encode(dst []byte, v Version) ([]byte, error) {
	if !isAck(p.Kind) {
		return dst, fmt.Errorf("encode ack: kind %v: %w", p.Kind, ErrProtocolError)
	}
	if err := checkVersion(v); err != nil {
		return dst, fmt.Errorf("encode %v: %w", p.Kind, err)
	}
	s := sizer{n: 2}
	props := 0
	if v == V5 {
		var err error
		if props, err = p.Props.size(p.Kind); err != nil {
			return dst, fmt.Errorf("encode %v: %w", p.Kind, err)
		}
		switch {
		case props > 0:
			s.n += 1 + VarintSize(props) + props
		case p.ReasonCode != 0:
			s.n++
		}
	}
	dst, err := finish(dst, p.Kind, ackFlags(p.Kind), &s)
	if err != nil {
		return dst, err
	}
	dst = appendU16(dst, p.PacketID)
	if s.n > 2 {
		dst = append(dst, p.ReasonCode)
		if props > 0 {
			dst = p.Props.appendTo(dst, props, p.Kind)
		}
	}
	return dst, nil
}
