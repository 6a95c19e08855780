package packet

import (
	"errors"
	"io"
)

// ErrIncomplete is returned by ParseFixedHeader when b does not yet hold a
// whole fixed header.
var ErrIncomplete = errors.New("packet: incomplete fixed header")

// ParseFixedHeader parses the fixed header at the start of b and returns it
// with its length in bytes. It returns ErrIncomplete when more bytes are
// needed, and ErrMalformedPacket for a Remaining Length over four bytes or
// reserved flag bits that are wrong for the type [MQTT-2.1.3-1].
func ParseFixedHeader(b []byte) (fh FixedHeader, n int, err error) {
	panic("TODO(codec)")
}

// Decode decodes a packet body of the given fixed header for version v
// (CONNECT reads its version from the body). The packet aliases body.
func Decode(fh FixedHeader, body []byte, v Version) (Packet, error) {
	panic("TODO(codec)")
}

// ReadPacket reads and decodes one packet from r, rejecting one whose
// Remaining Length exceeds maxSize with ErrPacketTooLarge (maxSize 0: no limit).
// It allocates; clients and tests use it, the broker has its own reader.
func ReadPacket(r io.Reader, v Version, maxSize int) (Packet, error) {
	panic("TODO(codec)")
}

// EncodeHeader appends every byte of the PUBLISH except the payload; the
// Remaining Length counts the payload, so writing the result followed by
// p.Payload sends the whole packet. Subscribers share the payload slice.
func (p *Publish) EncodeHeader(dst []byte, v Version) ([]byte, error) {
	panic("TODO(codec)")
}

func (p *Connect) Encode(dst []byte, v Version) ([]byte, error)     { panic("TODO(codec)") }
func (p *Connack) Encode(dst []byte, v Version) ([]byte, error)     { panic("TODO(codec)") }
func (p *Publish) Encode(dst []byte, v Version) ([]byte, error)     { panic("TODO(codec)") }
func (p *Ack) Encode(dst []byte, v Version) ([]byte, error)         { panic("TODO(codec)") }
func (p *Subscribe) Encode(dst []byte, v Version) ([]byte, error)   { panic("TODO(codec)") }
func (p *Suback) Encode(dst []byte, v Version) ([]byte, error)      { panic("TODO(codec)") }
func (p *Unsubscribe) Encode(dst []byte, v Version) ([]byte, error) { panic("TODO(codec)") }
func (p *Unsuback) Encode(dst []byte, v Version) ([]byte, error)    { panic("TODO(codec)") }
func (p *Pingreq) Encode(dst []byte, v Version) ([]byte, error)     { panic("TODO(codec)") }
func (p *Pingresp) Encode(dst []byte, v Version) ([]byte, error)    { panic("TODO(codec)") }
func (p *Disconnect) Encode(dst []byte, v Version) ([]byte, error)  { panic("TODO(codec)") }
func (p *Auth) Encode(dst []byte, v Version) ([]byte, error)        { panic("TODO(codec)") }

// Decode methods: each decodes a body (after the fixed header) into p,
// aliasing body. Decode above dispatches to them.
func (p *Publish) Decode(fh FixedHeader, body []byte, v Version) error { panic("TODO(codec)") }
