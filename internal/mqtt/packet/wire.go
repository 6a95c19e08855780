package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
	"unsafe"
)

// MaxRemainingLength is the largest Remaining Length a four-byte Variable
// Byte Integer can carry [MQTT-1.5.5].
const MaxRemainingLength = 268_435_455

// maxString is the longest UTF-8 string or binary field [MQTT-1.5.4].
const maxString = 65535

// VarintSize is the number of bytes of the Variable Byte Integer encoding of
// v (1 to 4; values over MaxRemainingLength are reported as 5).
func VarintSize(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16_384:
		return 2
	case v < 2_097_152:
		return 3
	case v <= MaxRemainingLength:
		return 4
	}
	return 5
}

// AppendVarint appends the Variable Byte Integer encoding of v to dst
// [MQTT-1.5.5]. v must be in [0, MaxRemainingLength].
func AppendVarint(dst []byte, v int) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(dst, b)
		}
		dst = append(dst, b|0x80)
	}
}

// DecodeVarint decodes the Variable Byte Integer at the start of b and
// returns it with its length. It returns ErrIncomplete when b ends inside
// it, and ErrMalformedPacket when it is longer than four bytes or not in its
// shortest form [MQTT-1.5.5-1].
func DecodeVarint(b []byte) (v, n int, err error) {
	for shift := 0; n < 4; shift += 7 {
		if n >= len(b) {
			return 0, 0, ErrIncomplete
		}
		c := b[n]
		n++
		v |= int(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && n > 1 {
				return 0, 0, fmt.Errorf("variable byte integer not in shortest form [MQTT-1.5.5-1]: %w", ErrMalformedPacket)
			}
			return v, n, nil
		}
	}
	return 0, 0, fmt.Errorf("variable byte integer longer than four bytes: %w", ErrMalformedPacket)
}

// ValidString reports whether b is a well-formed MQTT UTF-8 string: valid
// UTF-8, no surrogate code points (utf8.Valid rejects them) and no U+0000
// [MQTT-1.5.4-1] [MQTT-1.5.4-2].
func ValidString(b []byte) bool {
	// Fast path, eight bytes at a time: all ASCII and no zero byte.
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		if w&hi != 0 || (w-lo)&^w&hi != 0 {
			return validStringSlow(b[i:])
		}
	}
	for _, c := range b[i:] {
		if c == 0 || c >= utf8.RuneSelf {
			return validStringSlow(b[i:])
		}
	}
	return true
}

func validStringSlow(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

// malformed returns ErrMalformedPacket with context.
func malformed(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrMalformedPacket)...)
}

// protocolError returns ErrProtocolError with context.
func protocolError(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrProtocolError)...)
}

// reader decodes the fields of one packet body. Its error is sticky: after
// the first failure every read returns a zero value, so decoders check err
// once per step that depends on a value.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) truncated(what string) {
	r.fail(malformed("%s: truncated", what))
}

func (r *reader) u8(what string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.truncated(what)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) u16(what string) uint16 {
	if r.err != nil {
		return 0
	}
	if r.left() < 2 {
		r.truncated(what)
		return 0
	}
	v := uint16(r.b[r.off])<<8 | uint16(r.b[r.off+1])
	r.off += 2
	return v
}

func (r *reader) u32(what string) uint32 {
	if r.err != nil {
		return 0
	}
	if r.left() < 4 {
		r.truncated(what)
		return 0
	}
	b := r.b[r.off : r.off+4]
	r.off += 4
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (r *reader) varint(what string) int {
	if r.err != nil {
		return 0
	}
	v, n, err := DecodeVarint(r.b[r.off:])
	if err == ErrIncomplete {
		r.truncated(what)
		return 0
	}
	if err != nil {
		r.fail(fmt.Errorf("%s: %w", what, err))
		return 0
	}
	r.off += n
	return v
}

// bin reads Binary Data: a two-byte length and that many bytes [MQTT-1.5.6].
// An empty field reads as nil. The result aliases the body, capped so that an
// append cannot overwrite what follows.
func (r *reader) bin(what string) []byte {
	n := int(r.u16(what))
	if r.err != nil {
		return nil
	}
	if r.left() < n {
		r.truncated(what)
		return nil
	}
	if n == 0 {
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// str reads a UTF-8 Encoded String [MQTT-1.5.4] as a string aliasing the
// body (no copy: the packet owns the body and the caller must not reuse it).
func (r *reader) str(what string) string {
	b := r.bin(what)
	if r.err != nil || len(b) == 0 {
		return ""
	}
	if !ValidString(b) {
		r.fail(malformed("%s: invalid UTF-8 or U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2]", what))
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// rest returns the unread bytes (nil when none), capped like bin.
func (r *reader) rest() []byte {
	if r.err != nil || r.left() == 0 {
		return nil
	}
	b := r.b[r.off:len(r.b):len(r.b)]
	r.off = len(r.b)
	return b
}

// end fails unless every byte of the body was read.
func (r *reader) end(what string) error {
	if r.err == nil && r.left() != 0 {
		r.fail(malformed("%s: %d unexpected trailing bytes", what, r.left()))
	}
	return r.err
}

// sizer adds up the length of an encoding and checks the length limits of
// its fields; like reader its error is sticky.
type sizer struct {
	n   int
	err error
}

func (s *sizer) str(what string, n int) {
	if n > maxString && s.err == nil {
		s.err = malformed("%s: %d bytes, over %d", what, n, maxString)
	}
	s.n += 2 + n
}

func appendU16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendU32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendStr(dst []byte, s string) []byte {
	return append(appendU16(dst, uint16(len(s))), s...)
}

func appendBin(dst, b []byte) []byte {
	return append(appendU16(dst, uint16(len(b))), b...)
}

// appendFixedHeader appends the first byte and the Remaining Length rl.
func appendFixedHeader(dst []byte, t Type, flags byte, rl int) []byte {
	return AppendVarint(append(dst, byte(t)<<4|flags), rl)
}

// finish checks a body length and appends the fixed header for it.
func finish(dst []byte, t Type, flags byte, s *sizer) ([]byte, error) {
	if s.err != nil {
		return dst, fmt.Errorf("encode %v: %w", t, s.err)
	}
	if s.n > MaxRemainingLength {
		return dst, fmt.Errorf("encode %v: remaining length %d: %w", t, s.n, ErrPacketTooLarge)
	}
	return appendFixedHeader(dst, t, flags, s.n), nil
}

// checkVersion rejects a protocol level this codec does not speak.
func checkVersion(v Version) error {
	if v != V31 && v != V311 && v != V5 {
		return fmt.Errorf("protocol level %d: %w", byte(v), ErrUnsupportedProtocolVersion)
	}
	return nil
}
