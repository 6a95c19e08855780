package broker

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/testcert"
)

// TestCloseAfterPacketsSeen: a client that sends packets and closes its
// socket at once, without DISCONNECT, is seen to disconnect every time,
// with a keep-alive or without one (0: nothing else would ever end it):
// PUBACKs for the messages queued while it was away, a QoS 0 PUBLISH, a
// QoS 1 PUBLISH, a PINGREQ and a SUBSCRIBE, each written with the close
// right behind it. The close
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
			c.write(encode(packet.V311, &packet.Publish{Topic: "hup/p", Payload: []byte("x")}))
			c.close()
		}},
		{"QoS 1 PUBLISH", func(ka uint16) {
			c := tb.connect("hup-publish1", packet.V5, func(p *packet.Connect) { p.KeepAlive = ka })
			c.write(encode(packet.V5, &packet.Publish{Topic: "hup/p", QoS: 1, PacketID: 1, Payload: []byte("x")}))
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

// TestCloseAfterPacketsSeenOnListeners: the same over every listener
// kind, each layer beneath MQTT reading the socket its own way: PROXY
// protocol over TCP, TLS 1.2 (crypto/tls), TLS 1.3 (the listener's record
// layer), WebSocket over TCP and over TLS. The client writes two QoS 0
// PUBLISHes (nothing answers them: no reply that meets the closed socket
// and draws a reset) and drops its TCP socket at once, with no TLS
// close_notify and no WebSocket close frame.
func TestCloseAfterPacketsSeenOnListeners(t *testing.T) {
	ca := testcert.NewCA(t, "hup-ca")
	cert, key := testcert.WriteFiles(t, t.TempDir(), "hup", ca.Server(t, "127.0.0.1"))
	tlsConf := func(v uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: v, MaxVersion: v}
	}
	kinds := []struct {
		name string
		lc   config.Listener
		tls  *tls.Config
	}{
		{"proxy", config.Listener{URL: "tcp://127.0.0.1:0", ProxyProtocol: true, TrustedProxies: []string{"127.0.0.1"}}, nil},
		{"tls1.2", config.Listener{URL: "ssl://127.0.0.1:0"}, tlsConf(tls.VersionTLS12)},
		{"tls1.3", config.Listener{URL: "ssl://127.0.0.1:0"}, tlsConf(tls.VersionTLS13)},
		{"ws", config.Listener{URL: "ws://127.0.0.1:0/mqtt"}, nil},
		{"wss", config.Listener{URL: "wss://127.0.0.1:0/mqtt"}, tlsConf(tls.VersionTLS13)},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			tb := startBroker(t, Options{AllowAnonymous: true})
			if k.tls != nil {
				k.lc.TLS.CertFile, k.lc.TLS.KeyFile = cert, key
			}
			l, err := listener.New(k.lc, tb.Handle, nil)
			if err != nil {
				t.Fatal(err)
			}
			go l.Serve()
			t.Cleanup(func() { l.Close() })
			addr := l.Addr().String()
			// dial returns the MQTT client and its TCP socket.
			dial := func() (*client, net.Conn) {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { raw.Close() })
				var nc net.Conn = raw
				switch k.name {
				case "proxy":
					if _, err := raw.Write([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 40000 1883\r\n")); err != nil {
						t.Fatal(err)
					}
				case "ws", "wss":
					d := &websocket.Dialer{HandshakeTimeout: waitTime, TLSClientConfig: k.tls,
						NetDial: func(string, string) (net.Conn, error) { return raw, nil }}
					ws, _, err := d.Dial(l.URL(), nil)
					if err != nil {
						t.Fatal(err)
					}
					nc = &wsClientConn{Conn: ws}
				default:
					tc := tls.Client(raw, k.tls)
					if err := tc.Handshake(); err != nil {
						t.Fatal(err)
					}
					nc = tc
				}
				return &client{t: t, nc: nc, v: packet.V311}, raw
			}
			for i := range 40 {
				c, raw := dial()
				ka := uint16(60 * (i % 2))
				if ack := c.connect(fmt.Sprint("hup-", k.name), func(p *packet.Connect) { p.KeepAlive = ka }); ack.ReasonCode != 0 {
					t.Fatalf("connect: reason 0x%02x", ack.ReasonCode)
				}
				var b []byte
				for _, p := range []packet.Packet{&packet.Publish{Topic: "hup/p", Payload: []byte("x")}, &packet.Publish{Topic: "hup/p", Payload: []byte("y")}} {
					if b, err = p.Encode(b, packet.V311); err != nil {
						t.Fatal(err)
					}
				}
				c.write(b)
				raw.Close()
				eventually(t, fmt.Sprintf("#%d (keep-alive %d): the close to be seen", i, ka), func() bool {
					return tb.Stats().ClientsConnected == 0
				})
			}
		})
	}
}
