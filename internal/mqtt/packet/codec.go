package packet

import (
	"errors"
	"fmt"
	"io"
)

// ErrIncomplete is returned by ParseFixedHeader when b does not yet hold a
// whole fixed header.
var ErrIncomplete = errors.New("packet: incomplete fixed header")

// ParseFixedHeader parses the fixed header at the start of b and returns it
// with its length in bytes. It returns ErrIncomplete when more bytes are
// needed, and ErrMalformedPacket for a Remaining Length over four bytes or
// reserved flag bits that are wrong for the type [MQTT-2.1.3-1]. Not knowing
// the version, it lets through the DUP bit that 3.1 sets on a resent PUBREL,
// SUBSCRIBE or UNSUBSCRIBE; Decode rejects it in later versions.
func ParseFixedHeader(b []byte) (fh FixedHeader, n int, err error) {
	if len(b) == 0 {
		return fh, 0, ErrIncomplete
	}
	fh.Type, fh.Flags = Type(b[0]>>4), b[0]&0x0f
	if err := checkFlags(fh.Type, fh.Flags, V31); err != nil {
		return FixedHeader{}, 0, err
	}
	rl, n, err := DecodeVarint(b[1:])
	if err != nil {
		if err != ErrIncomplete {
			err = fmt.Errorf("remaining length: %w", err)
		}
		return FixedHeader{}, 0, err
	}
	fh.Remaining = rl
	return fh, 1 + n, nil
}

// checkFlags checks the low nibble of the first byte against its type for
// version v [MQTT-2.1.3-1]: PUBLISH's flags are DUP, QoS and RETAIN; PUBREL,
// SUBSCRIBE and UNSUBSCRIBE must have 0010 (3.1 may add DUP, bit 3, when it
// resends them); every other type 0000.
func checkFlags(t Type, flags byte, v Version) error {
	switch t {
	case 0:
		return malformed("reserved packet type 0")
	case PUBLISH:
		qos := flags >> 1 & 3
		if qos == 3 {
			return malformed("publish qos 3 [MQTT-3.3.1-4]")
		}
		if qos == 0 && flags&0x08 != 0 {
			return malformed("publish dup set on qos 0 [MQTT-3.3.1-2]")
		}
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		if v == V31 {
			flags &^= 0x08
		}
		if flags != 0x02 {
			return malformed("%v flags %04b, want 0010 [MQTT-2.1.3-1]", t, flags)
		}
	default:
		if flags != 0 {
			return malformed("%v flags %04b, want 0000 [MQTT-2.1.3-1]", t, flags)
		}
	}
	return nil
}

// checkHeader is the common start of every Decode method: the fixed header
// is of type t with valid flags, the body is exactly Remaining Length bytes,
// and v is a version this codec speaks.
func checkHeader(fh FixedHeader, body []byte, t Type, v Version) error {
	if fh.Type != t {
		return fmt.Errorf("decode %v: fixed header is %v: %w", t, fh.Type, ErrProtocolError)
	}
	if err := checkFlags(fh.Type, fh.Flags, v); err != nil {
		return err
	}
	if len(body) != fh.Remaining {
		return malformed("%v: remaining length %d but body of %d bytes", t, fh.Remaining, len(body))
	}
	if t != CONNECT {
		return checkVersion(v)
	}
	return nil
}

// New returns a new zero packet of type t, or nil for an invalid type.
func New(t Type) Packet {
	switch t {
	case CONNECT:
		return new(Connect)
	case CONNACK:
		return new(Connack)
	case PUBLISH:
		return new(Publish)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		return &Ack{Kind: t}
	case SUBSCRIBE:
		return new(Subscribe)
	case SUBACK:
		return new(Suback)
	case UNSUBSCRIBE:
		return new(Unsubscribe)
	case UNSUBACK:
		return new(Unsuback)
	case PINGREQ:
		return new(Pingreq)
	case PINGRESP:
		return new(Pingresp)
	case DISCONNECT:
		return new(Disconnect)
	case AUTH:
		return new(Auth)
	}
	return nil
}

// decoder is implemented by every packet type.
type decoder interface {
	Packet
	Decode(fh FixedHeader, body []byte, v Version) error
}

// Decode decodes a packet body of the given fixed header for version v
// (CONNECT reads its version from the body). The packet aliases body: its
// strings are unsafe.String views of body bytes, so the packet owns body and
// the caller must not reuse or modify it. On error the packet is nil and the
// error wraps a Code (see the package documentation).
func Decode(fh FixedHeader, body []byte, v Version) (Packet, error) {
	p, ok := New(fh.Type).(decoder)
	if !ok {
		return nil, malformed("reserved packet type %d", byte(fh.Type))
	}
	if err := p.Decode(fh, body, v); err != nil {
		return nil, err
	}
	return p, nil
}

// ReadPacket reads and decodes one packet from r, rejecting one whose
// Remaining Length exceeds maxSize with ErrPacketTooLarge (maxSize 0: no limit).
// It allocates; clients and tests use it, the broker has its own reader.
func ReadPacket(r io.Reader, v Version, maxSize int) (Packet, error) {
	var hdr [5]byte
	n := 0
	for {
		if _, err := io.ReadFull(r, hdr[n:n+1]); err != nil {
			if n > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		n++
		fh, _, err := ParseFixedHeader(hdr[:n])
		if err == ErrIncomplete {
			continue
		}
		if err != nil {
			return nil, err
		}
		if maxSize > 0 && fh.Remaining > maxSize {
			return nil, fmt.Errorf("%v remaining length %d over %d: %w", fh.Type, fh.Remaining, maxSize, ErrPacketTooLarge)
		}
		body := make([]byte, fh.Remaining)
		if _, err := io.ReadFull(r, body); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return Decode(fh, body, v)
	}
}
