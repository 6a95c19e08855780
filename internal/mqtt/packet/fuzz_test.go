package packet

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

var fuzzVersions = [...]Version{V31, V311, V5}

// FuzzDecode checks that decoding never panics, that every error is a
// reason code, and that whatever decodes encodes again to bytes that decode
// to the same packet and re-encode to the same bytes.
//
// The low bits of mode pick the version. With its top bit clear, data is a
// whole packet, fixed header included; with it set, data is the first byte
// and the body, and the Remaining Length is taken to be the body's length,
// so that mutations of the body are not all wasted on a length mismatch.
func FuzzDecode(f *testing.F) {
	for _, tc := range packetCases {
		if tc.wire == nil {
			continue
		}
		for i, v := range fuzzVersions {
			if v != tc.v {
				continue
			}
			f.Add(tc.wire, byte(i))
			if _, n, err := ParseFixedHeader(tc.wire); err == nil {
				f.Add(append([]byte{tc.wire[0]}, tc.wire[n:]...), byte(i)|0x80)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		v := fuzzVersions[int(mode&0x7f)%len(fuzzVersions)]
		if mode&0x80 != 0 && len(data) > 0 {
			data = append(AppendVarint([]byte{data[0]}, len(data)-1), data[1:]...)
		}
		fh, n, err := ParseFixedHeader(data)
		if err != nil {
			if err != ErrIncomplete && !isCode(err) {
				t.Fatalf("ParseFixedHeader error %v is not a Code", err)
			}
			return
		}
		body := data[n:]
		if len(body) > fh.Remaining {
			body = body[:fh.Remaining]
		}
		p, err := Decode(fh, body, v)
		if err != nil {
			if p != nil || !isCode(err) {
				t.Fatalf("Decode = %v, %v: want nil and a Code", p, err)
			}
			return
		}
		if c, ok := p.(*Connect); ok {
			v = c.Version
		}
		b, err := p.Encode(nil, v)
		if err != nil {
			t.Fatalf("encode of decoded %#v: %v", p, err)
		}
		if pub, ok := p.(*Publish); ok && pub.Size(v) != len(b) {
			t.Fatalf("Size = %d, encoded %d bytes", pub.Size(v), len(b))
		}
		p2, err := decodeWire(b, v)
		if err != nil {
			t.Fatalf("decode of re-encoded % x: %v\nfrom %#v", b, err, p)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("decode -> encode -> decode changed the packet:\n%#v\n%#v", p, p2)
		}
		b2, err := p2.Encode(nil, v)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("re-encode: % x, %v; want % x", b2, err, b)
		}
	})
}

func isCode(err error) bool {
	var c Code
	return errors.As(err, &c)
}

// FuzzValidString checks the word-at-a-time ValidString against the plain
// definition.
func FuzzValidString(f *testing.F) {
	f.Add([]byte("sensors/building-1/floor-2/temperature"))
	f.Add([]byte("città/€/\xed\xa0\x80/\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := ValidString(b), validStringSlow(b); got != want {
			t.Fatalf("ValidString(%q) = %v, want %v", b, got, want)
		}
	})
}
