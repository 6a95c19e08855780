package packet

import "fmt"

// decodeEmpty checks the header of a packet that has no body.
func decodeEmpty(fh FixedHeader, body []byte, t Type, v Version) error {
	if err := checkHeader(fh, body, t, v); err != nil {
		return err
	}
	if len(body) != 0 {
		return malformed("%v with a %d-byte body", t, len(body))
	}
	return nil
}

// encodeEmpty appends a packet that is its fixed header alone.
func encodeEmpty(dst []byte, t Type, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, fmt.Errorf("encode %v: %w", t, err)
	}
	return append(dst, byte(t)<<4, 0), nil
}

// Decode decodes a PINGREQ, which has no body [MQTT-3.12].
func (p *Pingreq) Decode(fh FixedHeader, body []byte, v Version) error {
	return decodeEmpty(fh, body, PINGREQ, v)
}

// Encode appends a PINGREQ.
func (p *Pingreq) Encode(dst []byte, v Version) ([]byte, error) { return encodeEmpty(dst, PINGREQ, v) }

// Decode decodes a PINGRESP, which has no body [MQTT-3.13].
func (p *Pingresp) Decode(fh FixedHeader, body []byte, v Version) error {
	return decodeEmpty(fh, body, PINGRESP, v)
}

// Encode appends a PINGRESP.
func (p *Pingresp) Encode(dst []byte, v Version) ([]byte, error) {
	return encodeEmpty(dst, PINGRESP, v)
}

// decodeReasonProps decodes the body shared by DISCONNECT and AUTH in
// version 5: an optional reason code (absent means 0) and optional
// properties (absent means none) [MQTT-3.14.2.1] [MQTT-3.15.2.1].
func decodeReasonProps(body []byte, t Type, code *byte, props *Properties) error {
	r := reader{b: body}
	if r.left() > 0 {
		*code = r.u8("reason code")
		if r.left() > 0 {
			props.decode(&r, t)
		}
	}
	if err := r.end(t.String()); err != nil {
		return err
	}
	return checkReason(t, *code, V5)
}

// Decode decodes a DISCONNECT body into p for version v; before version 5
// the body is empty.
func (p *Disconnect) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Disconnect{}
	if v != V5 {
		return decodeEmpty(fh, body, DISCONNECT, v)
	}
	if err := checkHeader(fh, body, DISCONNECT, v); err != nil {
		return err
	}
	return decodeReasonProps(body, DISCONNECT, &p.ReasonCode, &p.Props)
}

// Encode appends the DISCONNECT for version v: empty before version 5; in
// version 5 empty for a normal disconnection without properties, the reason
// code alone without properties, or both.
func (p *Disconnect) Encode(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return encodeEmpty(dst, DISCONNECT, v)
	}
	props, err := p.Props.size(DISCONNECT)
	if err != nil {
		return dst, fmt.Errorf("encode DISCONNECT: %w", err)
	}
	s := sizer{}
	switch {
	case props > 0:
		s.n = 1 + VarintSize(props) + props
	case p.ReasonCode != 0:
		s.n = 1
	}
	if dst, err = finish(dst, DISCONNECT, 0, &s); err != nil {
		return dst, err
	}
	if s.n > 0 {
		dst = append(dst, p.ReasonCode)
	}
	if props > 0 {
		dst = p.Props.appendTo(dst, props, DISCONNECT)
	}
	return dst, nil
}

// Decode decodes an AUTH body into p; AUTH exists in version 5 only and is
// a reserved packet type before it.
func (p *Auth) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Auth{}
	if err := checkHeader(fh, body, AUTH, v); err != nil {
		return err
	}
	if v != V5 {
		return malformed("AUTH is reserved before MQTT 5 [MQTT-2.2.1]")
	}
	return decodeReasonProps(body, AUTH, &p.ReasonCode, &p.Props)
}

// Encode appends the AUTH (version 5 only): empty for Success without
// properties, otherwise the reason code and properties.
func (p *Auth) Encode(dst []byte, v Version) ([]byte, error) {
	if v != V5 {
		return dst, fmt.Errorf("encode AUTH for version %v: %w", v, ErrProtocolError)
	}
	props, err := p.Props.size(AUTH)
	if err != nil {
		return dst, fmt.Errorf("encode AUTH: %w", err)
	}
	s := sizer{}
	if props > 0 || p.ReasonCode != 0 {
		s.n = 1 + VarintSize(props) + props
	}
	if dst, err = finish(dst, AUTH, 0, &s); err != nil {
		return dst, err
	}
	if s.n > 0 {
		dst = p.Props.appendTo(append(dst, p.ReasonCode), props, AUTH)
	}
	return dst, nil
}
