package packet

import (
	"fmt"
	"testing"
)

// benchVersion names a version in benchmark names: 3.1.1 and 5.
func benchVersion(v Version) string {
	if v == V5 {
		return "5"
	}
	return v.String()
}

var benchSizes = []struct {
	name string
	n    int
}{{"64", 64}, {"1KiB", 1024}}

// benchPublish is a QoS 1 PUBLISH with, in version 5, the properties a
// typical message carries: no User Properties or Subscription Identifiers.
func benchPublish(size int) *Publish {
	return &Publish{QoS: 1, PacketID: 42, Topic: "sensors/building-1/floor-2/temperature",
		Payload: make([]byte, size),
		Props: Properties{Present: has(PropPayloadFormat, PropMessageExpiry, PropTopicAlias),
			PayloadFormat: 1, MessageExpiry: 3600, TopicAlias: 3, ContentType: "application/json"}}
}

func BenchmarkDecode(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("type=publish/v=%s/size=%s", benchVersion(v), size.name), func(b *testing.B) {
				wire, err := benchPublish(size.n).Encode(nil, v)
				if err != nil {
					b.Fatal(err)
				}
				fh, n, _ := ParseFixedHeader(wire)
				body := wire[n:]
				var p Publish
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					if err := p.Decode(fh, body, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("type=publish/v=%s/size=%s", benchVersion(v), size.name), func(b *testing.B) {
				p := benchPublish(size.n)
				dst := make([]byte, 0, p.Size(v))
				b.SetBytes(int64(p.Size(v)))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if dst, err = p.Encode(dst[:0], v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEncodeHeader is the per-subscriber cost of fan-out: the header
// alone, the payload being shared.
func BenchmarkEncodeHeader(b *testing.B) {
	for _, v := range []Version{V311, V5} {
		b.Run(fmt.Sprintf("type=publish/v=%s", benchVersion(v)), func(b *testing.B) {
			p := benchPublish(1024)
			dst := make([]byte, 0, 128)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = p.EncodeHeader(dst[:0], v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecodePublishAllocs holds the steady-state PUBLISH decode to zero
// allocations: decoding into an existing *Publish aliases the body.
func TestDecodePublishAllocs(t *testing.T) {
	for _, v := range []Version{V31, V311, V5} {
		for _, qos := range []byte{0, 1, 2} {
			p := benchPublish(64)
			p.QoS = qos
			wire, err := p.Encode(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			fh, n, _ := ParseFixedHeader(wire)
			var q Publish
			if allocs := testing.AllocsPerRun(100, func() {
				if err := q.Decode(fh, wire[n:], v); err != nil {
					t.Fatal(err)
				}
			}); allocs != 0 {
				t.Errorf("v=%v qos=%d: %v allocations per decode, want 0", v, qos, allocs)
			}
		}
	}
}

// TestEncodePublishAllocs holds encoding into a large enough dst to zero
// allocations.
func TestEncodePublishAllocs(t *testing.T) {
	for _, v := range []Version{V311, V5} {
		p := benchPublish(64)
		dst := make([]byte, 0, 256)
		if allocs := testing.AllocsPerRun(100, func() {
			if _, err := p.Encode(dst[:0], v); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("v=%v: %v allocations per encode, want 0", v, allocs)
		}
	}
}
