package packet

import (
	"reflect"
	"testing"
)

// TestPropertiesClone: a clone equals the decoded properties and keeps
// nothing of the packet's body: overwriting the body changes only the
// original.
func TestPropertiesClone(t *testing.T) {
	p := &Publish{Topic: "t", Payload: []byte("x")}
	p.Props.ContentType, p.Props.ResponseTopic, p.Props.CorrelationData = "text/plain", "reply", []byte("corr")
	p.Props.User = []UserProperty{{Key: "k", Value: "v"}, {Key: "k2", Value: ""}}
	p.Props.SubscriptionIDs = []uint32{7}
	p.Props.Set(PropUser)
	wire, err := p.Encode(nil, V5)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeWire(wire, V5)
	if err != nil {
		t.Fatal(err)
	}
	orig := &got.(*Publish).Props
	clone := orig.Clone()
	if !reflect.DeepEqual(&clone, orig) {
		t.Fatalf("clone %#v, want %#v", clone, *orig)
	}
	want := Properties{Present: orig.Present, ContentType: "text/plain", ResponseTopic: "reply",
		CorrelationData: []byte("corr"), SubscriptionIDs: []uint32{7},
		User: []UserProperty{{Key: "k", Value: "v"}, {Key: "k2", Value: ""}}}
	for i := range wire {
		wire[i] = 'Z'
	}
	orig.SubscriptionIDs[0] = 9
	if !reflect.DeepEqual(clone, want) {
		t.Fatalf("after the body was overwritten: clone %#v, want %#v", clone, want)
	}
}
