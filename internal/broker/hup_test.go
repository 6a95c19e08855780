package broker

import (
	"fmt"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestCloseAfterPacketsSeen: a client that sends packets and closes its
// socket at once, without DISCONNECT, is seen to disconnect every time,
// with a keep-alive or without one (0: nothing else would ever end it):
// PUBACKs for the messages queued while it was away, a PUBLISH, a PINGREQ
// and a SUBSCRIBE, each written with the close right behind it. The close
// often arrives before the poller takes the packets' event, so that one
// edge-triggered event announces both.
func TestCloseAfterPacketsSeen(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	pub := tb.connect("hup-pub", packet.V311)
	var pid uint16
	queue := func(n int) {
		for range n {
			pid++
			pub.publish("hup/q", "queued", 1, false, pid)
			pub.expect(packet.PUBACK)
		}
	}
	encode := func(v packet.Version, ps ...packet.Packet) []byte {
		var b []byte
		for _, p := range ps {
			var err error
			if b, err = p.Encode(b, v); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	persistent := func(ka uint16) func(*packet.Connect) {
		return func(p *packet.Connect) {
			p.CleanStart, p.KeepAlive = false, ka
			p.Props.SessionExpiry = 300
			p.Props.Set(packet.PropSessionExpiry)
		}
	}
	sub := tb.connect("hup-sub", packet.V5, persistent(0))
	sub.subscribe(1, "hup/q", 1)
	sub.close()
	eventually(t, "the subscriber gone", func() bool { return tb.Stats().ClientsConnected == 1 })

	scenarios := []struct {
		name string
		run  func(ka uint16) // connects, writes, closes
	}{
		{"PUBACKs for queued messages", func(ka uint16) {
			queue(5)
			c := tb.dial(packet.V5)
			if ack := c.connect("hup-sub", persistent(ka)); ack.ReasonCode != 0 {
				t.Fatalf("reconnect: reason 0x%02x", ack.ReasonCode)
			}
			var acks []packet.Packet
			for range 5 {
				m := c.expect(packet.PUBLISH).(*packet.Publish)
				acks = append(acks, &packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
			}
			c.write(encode(packet.V5, acks...))
			c.close()
		}},
		{"PUBLISH", func(ka uint16) {
			c := tb.connect("hup-publish", packet.V311, func(p *packet.Connect) { p.KeepAlive = ka })
			c.write(encode(packet.V311, &packet.Publish{Topic: "hup/p", QoS: 1, PacketID: 1, Payload: []byte("x")}))
			c.close()
		}},
		{"PINGREQ", func(ka uint16) {
			c := tb.connect("hup-ping", packet.V5, func(p *packet.Connect) { p.KeepAlive = ka })
			c.write(encode(packet.V5, &packet.Pingreq{}))
			c.close()
		}},
		{"SUBSCRIBE and PINGREQ", func(ka uint16) {
			c := tb.connect("hup-subscribe", packet.V311, func(p *packet.Connect) { p.KeepAlive = ka })
			c.write(encode(packet.V311,
				&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "hup/s", QoS: 1}}},
				&packet.Pingreq{}))
			c.close()
		}},
	}
	for i := range 200 {
		s := scenarios[i%len(scenarios)]
		ka := uint16(0)
		if i/len(scenarios)%2 == 1 {
			ka = 60
		}
		s.run(ka)
		eventually(t, fmt.Sprintf("#%d %s (keep-alive %d): the close to be seen", i, s.name, ka), func() bool {
			return tb.Stats().ClientsConnected == 1
		})
	}
}
