package broker

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestDisconnectSurvivesClientWrites: a client that reads slowly and goes
// on writing after the broker decided to disconnect it (here a third QoS 2
// publish over a Receive Maximum of 2, followed by acknowledgements it had
// queued) still reads the DISCONNECT 0x93 behind the messages it had not
// read yet. Closing a socket with unread input makes the kernel reset the
// connection and discard what it had not sent; the broker shuts down its
// side instead, drains the client's input and closes after.
func TestDisconnectSurvivesClientWrites(t *testing.T) {
	cfg := testConfig()
	cfg.ReceiveMaximum = 2
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	c := tb.connect("chatty", packet.V5)
	c.nc.(*net.TCPConn).SetReadBuffer(32 << 10) // a slow reader: a small window
	c.subscribe(1, "news", 0)
	pub := tb.connect("pub", packet.V5)
	const news = 256
	payload := strings.Repeat("n", 1<<10)
	for range news { // more than the client's window: the rest waits in the broker's socket
		pub.publish("news", payload, 0, false, 0)
	}
	pub.send(&packet.Pingreq{})
	pub.expect(packet.PINGRESP)
	var burst []byte
	for pid := uint16(1); pid <= 3; pid++ {
		b, _ := (&packet.Publish{Topic: "t", Payload: []byte("x"), QoS: 2, PacketID: pid}).Encode(nil, packet.V5)
		burst = append(burst, b...)
	}
	ack, _ := (&packet.Ack{Kind: packet.PUBACK, PacketID: 9}).Encode(nil, packet.V5)
	burst = append(burst, bytes.Repeat(ack, 16<<10)...) // 64 KiB the broker will not read
	c.write(burst)
	eventually(t, "the broker to end the connection", func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		return len(tb.conns) == 1
	})
	var got []packet.Packet
	for {
		p, err := c.read(waitTime)
		if err != nil {
			t.Logf("read ended with %v after %d packets", err, len(got))
			break
		}
		got = append(got, p)
	}
	n := 0
	for _, p := range got {
		switch p := p.(type) {
		case *packet.Publish:
			n++
		case *packet.Disconnect:
			if p.ReasonCode != packet.ErrReceiveMaximumExceeded.Value {
				t.Fatalf("DISCONNECT 0x%02x, want 0x93", p.ReasonCode)
			}
			if n != news {
				t.Fatalf("DISCONNECT after %d of %d messages", n, news)
			}
			return
		}
	}
	t.Fatalf("no DISCONNECT 0x93 after %d messages (%d packets)", n, len(got))
}
