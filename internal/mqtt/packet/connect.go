package packet

import "fmt"

// Connect flag bits [MQTT-3.1.2.3].
const (
	connectReserved   = 0x01
	connectCleanStart = 0x02
	connectWill       = 0x04
	connectWillRetain = 0x20
	connectPassword   = 0x40
	connectUsername   = 0x80
)

// protocolName is the Protocol Name that goes with a protocol level.
func protocolName(v Version) string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

// Decode decodes a CONNECT body into p. The protocol level comes from the
// body and is stored in p.Version; the v argument is ignored. An unknown
// protocol name or level is ErrUnsupportedProtocolVersion, with
// p.ProtocolName and p.Version set so that the caller can answer with the
// right CONNACK.
func (p *Connect) Decode(fh FixedHeader, body []byte, _ Version) error {
	*p = Connect{}
	if err := checkHeader(fh, body, CONNECT, 0); err != nil {
		return err
	}
	r := reader{b: body}
	p.ProtocolName = r.str("connect protocol name")
	p.Version = Version(r.u8("connect protocol level"))
	if r.err != nil {
		return r.err
	}
	if p.ProtocolName != protocolName(p.Version) || checkVersion(p.Version) != nil {
		return fmt.Errorf("connect: protocol %q level %d [MQTT-3.1.2-1] [MQTT-3.1.2-2]: %w",
			p.ProtocolName, byte(p.Version), ErrUnsupportedProtocolVersion)
	}
	flags := r.u8("connect flags")
	p.KeepAlive = r.u16("connect keep alive")
	if r.err != nil {
		return r.err
	}
	if err := p.setFlags(flags); err != nil {
		return err
	}
	if p.Version == V5 {
		p.Props.decode(&r, CONNECT)
	}
	p.ClientID = r.str("connect client identifier")
	if p.WillFlag {
		if p.Version == V5 {
			p.WillProps.decode(&r, willCtx)
		}
		p.WillTopic = r.str("connect will topic")
		p.WillPayload = r.bin("connect will payload")
	}
	if p.UsernameFlag {
		p.Username = r.str("connect user name")
	}
	if p.PasswordFlag {
		p.Password = r.bin("connect password")
	}
	if err := r.end("connect"); err != nil {
		return err
	}
	if p.Props.Has(PropAuthData) && !p.Props.Has(PropAuthMethod) {
		return protocolError("connect: authentication data without authentication method")
	}
	return nil
}

// setFlags checks and unpacks the Connect Flags byte.
func (p *Connect) setFlags(flags byte) error {
	if flags&connectReserved != 0 {
		return malformed("connect flags: reserved bit set [MQTT-3.1.2-3]")
	}
	p.CleanStart = flags&connectCleanStart != 0
	p.WillFlag = flags&connectWill != 0
	p.WillQoS = flags >> 3 & 3
	p.WillRetain = flags&connectWillRetain != 0
	p.PasswordFlag = flags&connectPassword != 0
	p.UsernameFlag = flags&connectUsername != 0
	return p.checkFlags()
}

// checkFlags checks the consistency of the will and credential flags.
func (p *Connect) checkFlags() error {
	if p.WillQoS > 2 {
		return malformed("connect will qos %d [MQTT-3.1.2-14]", p.WillQoS)
	}
	if !p.WillFlag && p.WillQoS != 0 {
		return malformed("connect will qos %d without will flag [MQTT-3.1.2-13]", p.WillQoS)
	}
	if !p.WillFlag && p.WillRetain {
		return malformed("connect will retain without will flag [MQTT-3.1.2-15]")
	}
	if p.Version != V5 && p.PasswordFlag && !p.UsernameFlag {
		return malformed("connect password flag without user name flag [MQTT-3.1.2-22]")
	}
	return nil
}

func (p *Connect) flags() byte {
	var f byte
	if p.CleanStart {
		f |= connectCleanStart
	}
	if p.WillFlag {
		f |= connectWill
	}
	f |= p.WillQoS & 3 << 3
	if p.WillRetain {
		f |= connectWillRetain
	}
	if p.PasswordFlag {
		f |= connectPassword
	}
	if p.UsernameFlag {
		f |= connectUsername
	}
	return f
}

// Encode appends the CONNECT for protocol level v, or p.Version when v is 0.
// The Protocol Name is p.ProtocolName, or when that is empty the one that
// goes with the level. The flags are written as given, consistent or not.
func (p *Connect) Encode(dst []byte, v Version) ([]byte, error) {
	if v == 0 {
		v = p.Version
	}
	if err := checkVersion(v); err != nil {
		return dst, fmt.Errorf("encode CONNECT: %w", err)
	}
	if p.WillQoS > 3 {
		return dst, malformed("encode CONNECT: will qos %d does not fit in two bits", p.WillQoS)
	}
	name := p.ProtocolName
	if name == "" {
		name = protocolName(v)
	}
	s := sizer{n: 1 + 1 + 2}
	s.str("protocol name", len(name))
	var props, willProps int
	var err error
	if v == V5 {
		if props, err = p.Props.size(CONNECT); err != nil {
			return dst, fmt.Errorf("encode CONNECT: %w", err)
		}
		s.n += VarintSize(props) + props
	}
	s.str("client identifier", len(p.ClientID))
	if p.WillFlag {
		if v == V5 {
			if willProps, err = p.WillProps.size(willCtx); err != nil {
				return dst, fmt.Errorf("encode CONNECT: %w", err)
			}
			s.n += VarintSize(willProps) + willProps
		}
		s.str("will topic", len(p.WillTopic))
		s.str("will payload", len(p.WillPayload))
	}
	if p.UsernameFlag {
		s.str("user name", len(p.Username))
	}
	if p.PasswordFlag {
		s.str("password", len(p.Password))
	}
	dst, err = finish(dst, CONNECT, 0, &s)
	if err != nil {
		return dst, err
	}
	dst = appendStr(dst, name)
	dst = append(dst, byte(v), p.flags())
	dst = appendU16(dst, p.KeepAlive)
	if v == V5 {
		dst = p.Props.appendTo(dst, props, CONNECT)
	}
	dst = appendStr(dst, p.ClientID)
	if p.WillFlag {
		if v == V5 {
			dst = p.WillProps.appendTo(dst, willProps, willCtx)
		}
		dst = appendStr(dst, p.WillTopic)
		dst = appendBin(dst, p.WillPayload)
	}
	if p.UsernameFlag {
		dst = appendStr(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBin(dst, p.Password)
	}
	return dst, nil
}

// Decode decodes a CONNACK body for version v into p. In 3.1 the first
// byte is unused and ignored.
func (p *Connack) Decode(fh FixedHeader, body []byte, v Version) error {
	*p = Connack{}
	if err := checkHeader(fh, body, CONNACK, v); err != nil {
		return err
	}
	r := reader{b: body}
	flags := r.u8("connack flags")
	p.ReasonCode = r.u8("connack reason code")
	if r.err != nil {
		return r.err
	}
	switch {
	case v == V31:
		// 3.1 has no Session Present: the byte is reserved and unused.
	case flags&^1 != 0:
		return malformed("connack flags %08b: reserved bits set [MQTT-3.2.2-1]", flags)
	default:
		p.SessionPresent = flags&1 != 0
	}
	if v == V5 {
		if r.left() > 0 { // tolerate a missing property length
			p.Props.decode(&r, CONNACK)
		}
	}
	if err := r.end("connack"); err != nil {
		return err
	}
	if err := checkReason(CONNACK, p.ReasonCode, v); err != nil {
		return err
	}
	if p.SessionPresent && p.ReasonCode != 0 {
		return protocolError("connack: session present with reason code 0x%02x [MQTT-3.2.2-6]", p.ReasonCode)
	}
	return nil
}

// Encode appends the CONNACK for version v. SessionPresent is left out for
// 3.1, which does not have it.
func (p *Connack) Encode(dst []byte, v Version) ([]byte, error) {
	if err := checkVersion(v); err != nil {
		return dst, fmt.Errorf("encode CONNACK: %w", err)
	}
	s := sizer{n: 2}
	var props int
	if v == V5 {
		var err error
		if props, err = p.Props.size(CONNACK); err != nil {
			return dst, fmt.Errorf("encode CONNACK: %w", err)
		}
		s.n += VarintSize(props) + props
	}
	dst, err := finish(dst, CONNACK, 0, &s)
	if err != nil {
		return dst, err
	}
	var flags byte
	if p.SessionPresent && v != V31 { // 3.1 has no Session Present
		flags = 1
	}
	dst = append(dst, flags, p.ReasonCode)
	if v == V5 {
		dst = p.Props.appendTo(dst, props, CONNACK)
	}
	return dst, nil
}
