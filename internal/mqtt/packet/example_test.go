package packet_test

import (
	"bytes"
	"fmt"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

func Example() {
	pub := &packet.Publish{QoS: 1, PacketID: 7, Topic: "a/b", Payload: []byte("hi"),
		Props: packet.Properties{ContentType: "text/plain"}}
	wire, err := pub.Encode(nil, packet.V5)
	if err != nil {
		panic(err)
	}
	fmt.Printf("% x\n", wire)

	p, err := packet.ReadPacket(bytes.NewReader(wire), packet.V5, 1024)
	if err != nil {
		panic(err)
	}
	got := p.(*packet.Publish)
	fmt.Println(got.Type(), got.Topic, got.Props.ContentType, string(got.Payload))
	// Output:
	// 32 17 00 03 61 2f 62 00 07 0d 03 00 0a 74 65 78 74 2f 70 6c 61 69 6e 68 69
	// PUBLISH a/b text/plain hi
}

func ExampleParseFixedHeader() {
	buf := []byte{0x40, 0x02, 0x00, 0x07, 0xc0} // a PUBACK and the first byte of a PINGREQ
	for len(buf) > 0 {
		fh, n, err := packet.ParseFixedHeader(buf)
		if err == packet.ErrIncomplete || len(buf) < n+fh.Remaining {
			fmt.Println("need more bytes")
			return
		}
		p, err := packet.Decode(fh, buf[n:n+fh.Remaining], packet.V311)
		if err != nil {
			fmt.Println(err)
			return
		}
		if ack, ok := p.(*packet.Ack); ok {
			fmt.Println(ack.Kind, ack.PacketID)
		}
		buf = buf[n+fh.Remaining:]
	}
	// Output:
	// PUBACK 7
	// need more bytes
}
