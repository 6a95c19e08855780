package packet

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

func TestPacketCases(t *testing.T) {
	for _, tc := range packetCases {
		t.Run(tc.name+"/v="+tc.v.String(), func(t *testing.T) {
			if tc.encErr != nil {
				_, err := tc.pkt.Encode(nil, tc.v)
				checkErr(t, "encode", err, tc.encErr)
				return
			}
			if tc.encodeOnly && tc.err != nil {
				_, err := decodeWire(tc.wire, tc.v)
				checkErr(t, "decode of what was encoded as given", err, tc.err)
			}
			if !tc.encodeOnly {
				got, err := decodeWire(tc.wire, tc.v)
				if tc.err != nil {
					checkErr(t, "decode", err, tc.err)
					if got != nil {
						t.Fatalf("decode returned %#v with error %v", got, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("decode % x: %v", tc.wire, err)
				}
				if want := normalize(tc.pkt); !reflect.DeepEqual(got, want) {
					t.Fatalf("decode % x:\n got %#v\nwant %#v", tc.wire, got, want)
				}
			}
			if tc.decodeOnly {
				return
			}
			prefix := []byte("prefix")
			b, err := tc.pkt.Encode(bytes.Clone(prefix), tc.v)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatalf("encode overwrote dst: % x", b)
			}
			if b = b[len(prefix):]; !bytes.Equal(b, tc.wire) {
				t.Fatalf("encode:\n got % x\nwant % x", b, tc.wire)
			}
			if p, ok := tc.pkt.(*Publish); ok {
				if n := p.Size(tc.v); n != len(b) {
					t.Errorf("Size = %d, encoded %d bytes", n, len(b))
				}
				h, err := p.EncodeHeader(nil, tc.v)
				if err != nil || !bytes.Equal(append(h, p.Payload...), b) {
					t.Errorf("EncodeHeader + payload = % x, %v; want % x", h, err, b)
				}
			}
		})
	}
}

// TestReadPacket reads every decodable case from a stream, one after another.
func TestReadPacket(t *testing.T) {
	for _, tc := range packetCases {
		if tc.wire == nil || tc.encodeOnly {
			continue
		}
		if fh, n, err := ParseFixedHeader(tc.wire); err == nil && fh.Remaining != len(tc.wire)-n {
			continue // a stream cannot tell a short body from the next packet
		}
		r := bytes.NewReader(append(bytes.Clone(tc.wire), tc.wire...))
		for i := range 2 {
			got, err := ReadPacket(r, tc.v, 0)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("%s: ReadPacket error %v, want %v", tc.name, err, tc.err)
				}
				break
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", tc.name, i, err)
			}
			if want := normalize(tc.pkt); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s #%d:\n got %#v\nwant %#v", tc.name, i, got, want)
			}
		}
	}
}

func TestReadPacketErrors(t *testing.T) {
	wire := fix(0x30, str("a/b"), "payload")
	if _, err := ReadPacket(bytes.NewReader(wire), V311, 5); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("over maxSize: %v, want ErrPacketTooLarge", err)
	}
	if _, err := ReadPacket(bytes.NewReader(nil), V311, 0); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
	for n := 1; n < len(wire); n++ {
		if _, err := ReadPacket(bytes.NewReader(wire[:n]), V311, 0); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: %v, want io.ErrUnexpectedEOF", n, err)
		}
	}
}

func TestParseFixedHeader(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		fh   FixedHeader
		n    int
		want error
	}{
		{in: nil, want: ErrIncomplete},
		{in: raw(0x30), want: ErrIncomplete},
		{in: raw(0x30, 0x80), want: ErrIncomplete},
		{in: raw(0x30, 0x80, 0x80, 0x80), want: ErrIncomplete},
		{in: raw(0x30, 0), fh: FixedHeader{PUBLISH, 0, 0}, n: 2},
		{in: raw(0x3d, 0x7f), fh: FixedHeader{PUBLISH, 0x0d, 127}, n: 2},
		{in: raw(0x82, 0x80, 0x01), fh: FixedHeader{SUBSCRIBE, 2, 128}, n: 3},
		{in: raw(0x30, 0xff, 0xff, 0x7f), fh: FixedHeader{PUBLISH, 0, 2_097_151}, n: 4},
		{in: raw(0x30, 0xff, 0xff, 0xff, 0x7f, 9), fh: FixedHeader{PUBLISH, 0, MaxRemainingLength}, n: 5},
		{in: raw(0x30, 0xff, 0xff, 0xff, 0xff), want: ErrMalformedPacket},
		{in: raw(0x30, 0x80, 0x80, 0x00), want: ErrMalformedPacket},
		{in: raw(0x36), want: ErrMalformedPacket}, // flags are checked before the length arrives
		{in: raw(0x00, 0), want: ErrMalformedPacket},
		{in: raw(0x63, 2), want: ErrMalformedPacket},
	} {
		fh, n, err := ParseFixedHeader(tc.in)
		if !errors.Is(err, tc.want) || (err == nil && tc.want != nil) || fh != tc.fh || n != tc.n {
			t.Errorf("ParseFixedHeader(% x) = %+v, %d, %v; want %+v, %d, %v", tc.in, fh, n, err, tc.fh, tc.n, tc.want)
		}
	}
}

func TestVarint(t *testing.T) {
	for _, v := range []int{0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MaxRemainingLength} {
		b := AppendVarint(nil, v)
		if len(b) != VarintSize(v) {
			t.Errorf("VarintSize(%d) = %d, encoded %d bytes", v, VarintSize(v), len(b))
		}
		got, n, err := DecodeVarint(b)
		if got != v || n != len(b) || err != nil {
			t.Errorf("DecodeVarint(% x) = %d, %d, %v; want %d", b, got, n, err, v)
		}
	}
	if VarintSize(MaxRemainingLength+1) != 5 {
		t.Errorf("VarintSize over the maximum = %d, want 5", VarintSize(MaxRemainingLength+1))
	}
}

func TestValidString(t *testing.T) {
	for s, want := range map[string]bool{
		"":                 true,
		"a/b":              true,
		"città €𝄞":         true,
		"\uffff":           true, // a non-character is allowed
		"\x00":             false,
		"é\x00":            false,
		"\xff":             false,
		"\xed\xa0\x80":     false, // U+D800
		"\xed\xbf\xbf":     false, // U+DFFF
		"\xc0\xaf":         false, // overlong
		"\xf4\x90\x80\x80": false, // over U+10FFFF
	} {
		if got := ValidString([]byte(s)); got != want {
			t.Errorf("ValidString(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestCodes(t *testing.T) {
	if CodeOf(0x87) != ErrNotAuthorized || CodeOf(0) != Success || CodeOf(0x04) != DisconnectWithWill {
		t.Error("CodeOf: wrong code")
	}
	if c := CodeOf(0x55); c.Value != 0x55 || !strings.Contains(c.Reason, "0x55") {
		t.Errorf("CodeOf(0x55) = %+v", c)
	}
	if CodeFor(DISCONNECT, 0) != NormalDisconnection || CodeFor(SUBACK, 0) != GrantedQoS0 || CodeFor(PUBACK, 0) != Success {
		t.Error("CodeFor: wrong code")
	}
	if V3ConnackCode(ErrBadUsernameOrPassword) != V3BadUsernameOrPassword || V3ConnackCode(ErrQuotaExceeded) != V3ServerUnavailable {
		t.Error("V3ConnackCode: wrong code")
	}
	if V3ConnackCode(ErrUnsupportedProtocolVersion) != V3UnacceptableProtocolVersion {
		t.Error("V3ConnackCode: wrong code for unsupported protocol version")
	}
}

// TestDecodeReuse decodes into a used packet and checks nothing survives.
func TestDecodeReuse(t *testing.T) {
	for _, tc := range packetCases {
		if tc.pkt == nil || tc.wire == nil || tc.encodeOnly || tc.err != nil {
			continue
		}
		fh, n, _ := ParseFixedHeader(tc.wire)
		for _, other := range packetCases {
			if other.pkt == nil || other.wire == nil || other.encodeOnly || other.err != nil || other.pkt.Type() != tc.pkt.Type() {
				continue
			}
			ofh, on, _ := ParseFixedHeader(other.wire)
			p := New(fh.Type).(decoder)
			if err := p.Decode(ofh, other.wire[on:], other.v); err != nil {
				t.Fatal(err)
			}
			if err := p.Decode(fh, tc.wire[n:], tc.v); err != nil {
				t.Fatal(err)
			}
			if want := normalize(tc.pkt); !reflect.DeepEqual(p, want) {
				t.Fatalf("%s after %s:\n got %#v\nwant %#v", tc.name, other.name, p, want)
			}
		}
	}
}

func TestDecodeWrongType(t *testing.T) {
	var p Publish
	if err := p.Decode(FixedHeader{Type: PUBACK, Remaining: 2}, []byte{0, 1}, V5); !errors.Is(err, ErrProtocolError) {
		t.Errorf("Publish.Decode of PUBACK: %v", err)
	}
	var a Ack
	if err := a.Decode(FixedHeader{Type: PUBLISH, Remaining: 2}, []byte{0, 1}, V5); !errors.Is(err, ErrProtocolError) {
		t.Errorf("Ack.Decode of PUBLISH: %v", err)
	}
}

// TestDecodeAliasesBody checks the documented ownership rule: a decoded
// packet points into its body, and slices are capped so that appending to
// one cannot overwrite the bytes after it.
func TestDecodeAliasesBody(t *testing.T) {
	wire := fix(0x32, str("t/x"), 0, 1, props(0x09, str("cd")), "payload")
	fh, n, _ := ParseFixedHeader(wire)
	body := wire[n:]
	var p Publish
	if err := p.Decode(fh, body, V5); err != nil {
		t.Fatal(err)
	}
	within := func(ptr *byte) bool {
		for i := range body {
			if &body[i] == ptr {
				return true
			}
		}
		return false
	}
	if !within(unsafe.StringData(p.Topic)) || !within(&p.Payload[0]) || !within(&p.Props.CorrelationData[0]) {
		t.Fatal("decoded fields do not alias the body")
	}
	_ = append(p.Props.CorrelationData, 'X')
	if string(p.Payload) != "payload" || string(body[len(body)-7:]) != "payload" {
		t.Fatal("append to a decoded slice overwrote the body")
	}
}

// TestValidStringPositions puts a bad byte at every position of strings of
// every length to 20, so that both the word-at-a-time loop and the tail
// loop see it.
func TestValidStringPositions(t *testing.T) {
	for n := 1; n <= 20; n++ {
		for i := range n {
			for _, bad := range []byte{0x00, 0x80, 0xff} {
				b := bytes.Repeat([]byte{'a'}, n)
				b[i] = bad
				if ValidString(b) {
					t.Errorf("ValidString(%q) = true", b)
				}
			}
			b := bytes.Repeat([]byte{'a'}, n)
			b = append(b[:i], append([]byte("é"), b[i:]...)...)
			if !ValidString(b) {
				t.Errorf("ValidString(%q) = false", b)
			}
		}
	}
}

func TestEncodeVersion(t *testing.T) {
	for typ := CONNECT; typ <= AUTH; typ++ {
		for _, v := range []Version{0, 2, 6} {
			p := New(typ)
			if c, ok := p.(*Connect); ok && v == 0 {
				c.Version = 7 // Encode(0) means p.Version
			}
			want := ErrUnsupportedProtocolVersion
			if typ == AUTH {
				want = ErrProtocolError
			}
			if _, err := p.Encode(nil, v); !errors.Is(err, want) {
				t.Errorf("%v.Encode(v=%d): %v, want %v", typ, v, err, want)
			}
		}
	}
}

func TestEncodeTooLarge(t *testing.T) {
	p := &Publish{Topic: "t", Payload: make([]byte, MaxRemainingLength)} // untouched: not backed by memory
	if _, err := p.EncodeHeader(nil, V311); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("EncodeHeader: %v, want ErrPacketTooLarge", err)
	}
	s := &Suback{PacketID: 1, ReasonCodes: make([]byte, MaxRemainingLength)}
	if _, err := s.Encode(nil, V311); !errors.Is(err, ErrPacketTooLarge) {
		t.Errorf("Suback.Encode: %v, want ErrPacketTooLarge", err)
	}
}

func TestPropertiesPresence(t *testing.T) {
	var p Properties
	if !p.Empty() || p.Has(PropTopicAlias) {
		t.Fatal("zero Properties not empty")
	}
	p.Set(PropTopicAlias)
	if p.Empty() || !p.Has(PropTopicAlias) {
		t.Fatal("Set did not mark the property present")
	}
	p.Clear(PropTopicAlias)
	p.ReasonString = "r"
	if p.Empty() || p.Has(PropTopicAlias) {
		t.Fatal("Clear, or a non-empty string, not reflected")
	}
	if PropTopicAlias.String() != "topic alias" || PropID(0x7f).String() != "property 0x7f" {
		t.Errorf("PropID.String: %q, %q", PropTopicAlias, PropID(0x7f))
	}
}
