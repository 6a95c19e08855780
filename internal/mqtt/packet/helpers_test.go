package packet

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// raw concatenates bytes, ints (as one byte each), strings (as their bytes,
// no length) and byte slices: the wire form written out by hand.
func raw(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case byte:
			b = append(b, p)
		case int:
			b = append(b, byte(p))
		case string:
			b = append(b, p...)
		case []byte:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("raw: %T", p))
		}
	}
	return b
}

// str is a two-byte length and s: a UTF-8 string or binary field.
func str(s string) []byte { return raw(len(s)>>8, len(s)&0xff, s) }

// fix is a whole packet: first byte b0, the Remaining Length and the body.
func fix(b0 byte, body ...any) []byte {
	bb := raw(body...)
	out := []byte{b0}
	for n := len(bb); ; {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			out = append(out, c)
			break
		}
		out = append(out, c|0x80)
	}
	return append(out, bb...)
}

// props is a property length and the properties.
func props(body ...any) []byte {
	bb := raw(body...)
	if len(bb) > 127 {
		panic("props: too long for the test helper")
	}
	return raw(len(bb), bb)
}

// has is a Properties.Present value for the scalar properties ids.
func has(ids ...PropID) uint64 {
	var m uint64
	for _, id := range ids {
		m |= 1 << id
	}
	return m
}

// normalize sets Present of every Properties in p to the set its encoding
// emits, so that a hand-written packet compares equal to a decoded one
// whatever bits it left implicit.
func normalize(p Packet) Packet {
	if p == nil {
		return nil
	}
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer {
		return p
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	for i := 0; i < c.Elem().NumField(); i++ {
		if pr, ok := c.Elem().Field(i).Addr().Interface().(*Properties); ok {
			pr.Present = pr.present()
		}
	}
	return c.Interface().(Packet)
}

// decodeWire parses the fixed header of wire and decodes the rest.
func decodeWire(wire []byte, v Version) (Packet, error) {
	fh, n, err := ParseFixedHeader(wire)
	if err != nil {
		return nil, err
	}
	return Decode(fh, wire[n:], v)
}

func checkErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: error %v, want %v", what, got, want)
	}
	var c Code
	if !errors.As(got, &c) {
		t.Fatalf("%s: error %v is not a Code", what, got)
	}
}
