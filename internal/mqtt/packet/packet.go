// Package packet is the MQTT 3.1, 3.1.1 and 5.0 codec: packet types, properties,
// reason codes, and their wire encoding. It does no I/O beyond io.Reader helpers
// and starts no goroutines.
//
// Decoding aliases the input: strings and byte slices of a decoded packet point
// into the body buffer handed to Decode, which the packet then owns. Callers give
// each packet a buffer of its own (the reader allocates one per packet, which is
// also the message's storage), so a steady-state PUBLISH decode allocates nothing.
// Strings are made with unsafe.String over the body bytes: a caller that
// reuses or mutates a body after decoding changes the packet that owns it.
//
// Every decode error wraps one of the reason codes of codes.go, so that
// errors.Is(err, ErrMalformedPacket) holds and the Code found with errors.As
// is what a version 5 peer is sent: ErrMalformedPacket for what cannot be
// parsed or breaks an encoding rule (reserved bits, truncated fields, bad
// UTF-8, a property not allowed in the packet [MQTT-2.2.2.2]),
// ErrProtocolError for a well-formed packet the protocol forbids (packet
// identifier 0, a repeated property, a value out of range, an invalid reason
// code), and ErrUnsupportedProtocolVersion for a CONNECT of an unknown
// protocol name or level. Before version 5 the broker closes the network
// connection instead [MQTT-4.8.0-1], or answers an unsupported protocol with
// the CONNACK return code V3UnacceptableProtocolVersion (see V3ConnackCode).
//
// Encode writes what it is given, even a packet that breaks a protocol rule
// the decoder enforces (tests send such packets on purpose); it fails only
// for what the wire cannot represent: a version it does not speak, a string
// over 65,535 bytes, a value too wide for its field, a packet over the
// largest Remaining Length. Fields a version does not have (properties and
// reason codes before 5) are left out, and so are properties the packet type
// cannot carry (a will's Will Delay Interval when its properties go into a
// PUBLISH).
// Topic names and filters are checked as UTF-8 strings only: their syntax
// (wildcards, levels) is package topic's job.
package packet

// Version is the protocol level carried in CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1 ("MQIsdp")
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// String returns the version as people write it: "3.1", "3.1.1" or "5.0".
func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "unknown"
}

// Type is the MQTT control packet type, the high nibble of the first byte.
type Type byte

// Control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

// String returns the packet type's name as the spec writes it ("PUBLISH").
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "INVALID"
}

// FixedHeader is the first byte and the Remaining Length of every packet.
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of the first byte
	Remaining int  // Remaining Length: bytes after the fixed header
}

// Packet is any MQTT control packet.
type Packet interface {
	// Type is the control packet type.
	Type() Type
	// Encode appends the packet's wire form for protocol version v to dst.
	Encode(dst []byte, v Version) ([]byte, error)
}

// Connect is CONNECT [MQTT-3.1].
type Connect struct {
	ProtocolName string  // "MQTT", or "MQIsdp" for 3.1
	Version      Version // protocol level
	CleanStart   bool    // Clean Session in 3.1.1
	KeepAlive    uint16  // seconds
	Props        Properties
	ClientID     string

	WillFlag    bool
	WillQoS     byte
	WillRetain  bool
	WillProps   Properties
	WillTopic   string
	WillPayload []byte

	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
}

// Connack is CONNACK [MQTT-3.2]. ReasonCode is the 3.1.1 return code for
// versions before 5.
type Connack struct {
	SessionPresent bool
	ReasonCode     byte
	Props          Properties
}

// Publish is PUBLISH [MQTT-3.3].
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    string
	PacketID uint16 // only when QoS > 0
	Props    Properties
	Payload  []byte
}

// Ack is PUBACK, PUBREC, PUBREL or PUBCOMP [MQTT-3.4 to 3.7]; Kind says which.
type Ack struct {
	Kind       Type
	PacketID   uint16
	ReasonCode byte
	Props      Properties
}

// Subscription is one entry of a SUBSCRIBE payload [MQTT-3.8.3].
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0, 1 or 2
}

// Subscribe is SUBSCRIBE [MQTT-3.8].
type Subscribe struct {
	PacketID      uint16
	Props         Properties
	Subscriptions []Subscription
}

// Suback is SUBACK [MQTT-3.9]; for versions before 5 the codes are the granted
// QoS or 0x80.
type Suback struct {
	PacketID    uint16
	Props       Properties
	ReasonCodes []byte
}

// Unsubscribe is UNSUBSCRIBE [MQTT-3.10].
type Unsubscribe struct {
	PacketID uint16
	Props    Properties
	Filters  []string
}

// Unsuback is UNSUBACK [MQTT-3.11]; versions before 5 carry no reason codes.
type Unsuback struct {
	PacketID    uint16
	Props       Properties
	ReasonCodes []byte
}

// Pingreq is PINGREQ [MQTT-3.12].
type Pingreq struct{}

// Pingresp is PINGRESP [MQTT-3.13].
type Pingresp struct{}

// Disconnect is DISCONNECT [MQTT-3.14]; versions before 5 have no body.
type Disconnect struct {
	ReasonCode byte
	Props      Properties
}

// Auth is AUTH [MQTT-3.15], version 5 only.
type Auth struct {
	ReasonCode byte
	Props      Properties
}

// Type returns CONNECT.
func (*Connect) Type() Type { return CONNECT }

// Type returns CONNACK.
func (*Connack) Type() Type { return CONNACK }

// Type returns PUBLISH.
func (*Publish) Type() Type { return PUBLISH }

// Type returns a.Kind: PUBACK, PUBREC, PUBREL or PUBCOMP.
func (a *Ack) Type() Type { return a.Kind }

// Type returns SUBSCRIBE.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Type returns SUBACK.
func (*Suback) Type() Type { return SUBACK }

// Type returns UNSUBSCRIBE.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Type returns UNSUBACK.
func (*Unsuback) Type() Type { return UNSUBACK }

// Type returns PINGREQ.
func (*Pingreq) Type() Type { return PINGREQ }

// Type returns PINGRESP.
func (*Pingresp) Type() Type { return PINGRESP }

// Type returns DISCONNECT.
func (*Disconnect) Type() Type { return DISCONNECT }

// Type returns AUTH.
func (*Auth) Type() Type { return AUTH }
