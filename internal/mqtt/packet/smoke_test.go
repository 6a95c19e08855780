package packet

import (
	"reflect"
	"testing"
)

func TestSmokeRoundTrip(t *testing.T) {
	pkts := []Packet{
		&Connect{ProtocolName: "MQTT", Version: V311, CleanStart: true, KeepAlive: 30, ClientID: "c", WillFlag: true, WillQoS: 1, WillTopic: "w", WillPayload: []byte("x"), UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p")},
		&Connack{SessionPresent: true},
		&Publish{QoS: 1, PacketID: 7, Topic: "a/b", Payload: []byte("hi")},
		&Ack{Kind: PUBREL, PacketID: 3},
		&Subscribe{PacketID: 1, Subscriptions: []Subscription{{Filter: "a/#", QoS: 1}}},
		&Suback{PacketID: 1, ReasonCodes: []byte{1}},
		&Unsubscribe{PacketID: 1, Filters: []string{"a"}},
		&Pingreq{}, &Pingresp{}, &Disconnect{},
	}
	for _, v := range []Version{V311, V5} {
		for _, p := range pkts {
			if c, ok := p.(*Connect); ok {
				c.Version = v
			}
			b, err := p.Encode(nil, v)
			if err != nil {
				t.Fatalf("%v %T: %v", v, p, err)
			}
			fh, n, err := ParseFixedHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			q, err := Decode(fh, b[n:], v)
			if err != nil {
				t.Fatalf("%v %T %x: %v", v, p, b, err)
			}
			if u, ok := q.(*Unsuback); ok && v == V5 {
				_ = u
			}
			if !reflect.DeepEqual(p, q) {
				t.Errorf("%v: %#v != %#v", v, p, q)
			}
		}
	}
}
