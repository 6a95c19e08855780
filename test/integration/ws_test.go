package integration

import (
	"bufio"
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/gorilla/websocket"
)

// dialWS opens a WebSocket to the broker's ws:// listener offering the
// given subprotocols.
func dialWS(t *testing.T, url string, protos ...string) (*websocket.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	d := websocket.Dialer{Subprotocols: protos, HandshakeTimeout: waitTimeout}
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket dial %s %v: %v (HTTP %d)", url, protos, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Subprotocol()
}

// wsReadPacket reads the next MQTT packet from binary frames, however the
// broker framed it.
type wsReader struct {
	t   *testing.T
	c   *websocket.Conn
	buf bytes.Buffer
}

func (r *wsReader) Read(p []byte) (int, error) {
	for r.buf.Len() == 0 {
		r.c.SetReadDeadline(time.Now().Add(waitTimeout))
		typ, data, err := r.c.ReadMessage()
		if err != nil {
			return 0, err
		}
		if typ != websocket.BinaryMessage {
			r.t.Errorf("broker sent a WebSocket frame of type %d, want binary [MQTT-6.0.0-1]", typ)
		}
		r.buf.Write(data)
	}
	return r.buf.Read(p)
}

// TestWebSocketFraming proves the WebSocket listener selects the "mqtt"
// subprotocol [MQTT-6.0.0-4], reads MQTT packets split across and packed
// into WebSocket frames [MQTT-6.0.0-2], answers in binary frames, and closes
// the connection on a text frame [MQTT-6.0.0-1].
func TestWebSocketFraming(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	url := srv.URL("ws")
	pub := connectV5(t, tcpAddr(t, srv), v5Connect("pub", true, 0))

	c, proto := dialWS(t, url, "mqtt")
	if proto != "mqtt" {
		t.Errorf("negotiated subprotocol %q, want mqtt", proto)
	}
	connect := mustEncode(t, &packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "ws-frames", CleanStart: true, KeepAlive: 30})
	subscribe := mustEncode(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{rawSub("wsf/#", 1)}})
	// CONNECT split in two frames, the second carrying SUBSCRIBE as well.
	cut := 5
	if err := c.WriteMessage(websocket.BinaryMessage, connect[:cut]); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, append(bytes.Clone(connect[cut:]), subscribe...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(&wsReader{t: t, c: c})
	ca, err := packet.ReadPacket(r, packet.V5, 0)
	if err != nil {
		t.Fatalf("CONNACK over ws: %v", err)
	}
	if ca, ok := ca.(*packet.Connack); !ok || ca.ReasonCode != 0 {
		t.Fatalf("got %+v, want CONNACK 0", ca)
	}
	sa, err := packet.ReadPacket(r, packet.V5, 0)
	if err != nil {
		t.Fatalf("SUBACK over ws: %v", err)
	}
	if sa, ok := sa.(*packet.Suback); !ok || len(sa.ReasonCodes) != 1 || sa.ReasonCodes[0] != 1 {
		t.Fatalf("got %+v, want SUBACK [1]", sa)
	}
	pub.publish("wsf/x", 1, "framed")
	p, err := packet.ReadPacket(r, packet.V5, 0)
	if err != nil {
		t.Fatalf("PUBLISH over ws: %v", err)
	}
	if p, ok := p.(*packet.Publish); !ok || string(p.Payload) != "framed" {
		t.Fatalf("got %+v, want the PUBLISH", p)
	}

	// A text frame closes the connection.
	c2, _ := dialWS(t, url, "mqtt")
	if err := c2.WriteMessage(websocket.TextMessage, connect); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(waitTimeout))
	if typ, data, err := c2.ReadMessage(); err == nil {
		t.Errorf("text frame answered with frame type %d %x, want the connection closed", typ, data)
	}

	// "mqttv3.1" is accepted for MQTT 3.1 clients; an unknown subprotocol alone is refused.
	if _, proto := dialWS(t, url, "mqttv3.1"); proto != "mqttv3.1" {
		t.Errorf("offered mqttv3.1, negotiated %q", proto)
	}
	d := websocket.Dialer{Subprotocols: []string{"stomp"}, HandshakeTimeout: waitTimeout}
	if c3, _, err := d.Dial(url, nil); err == nil {
		c3.Close()
		t.Errorf("handshake offering only subprotocol \"stomp\" accepted")
	}
}

// TestConnectFlagsValidated proves CONNECT header flags are checked: the
// reserved flag must be 0 [MQTT-3.1.2-3], Will QoS and Will Retain must be
// 0 without the Will Flag [MQTT-3.1.2-11, -13], Will QoS 3 is malformed
// [MQTT-3.1.2-12], and a Will Topic with wildcards is refused. Each closes
// the connection, after a CONNACK with an error code if any.
func TestConnectFlagsValidated(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	// A 3.1.1 CONNECT with client id "x" and the given connect flags.
	connect := func(flags byte, tail ...byte) []byte {
		body := append([]byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, flags, 0x00, 0x1e, 0x00, 0x01, 'x'}, tail...)
		return append([]byte{0x10, byte(len(body))}, body...)
	}
	will := []byte{0x00, 0x03, 'a', '/', '#', 0x00, 0x01, 'w'} // will topic "a/#", payload "w"
	cases := []struct {
		name  string
		bytes []byte
	}{
		{"reserved flag set", connect(0x03)},
		{"will qos without will flag", connect(0x0a)},
		{"will retain without will flag", connect(0x22)},
		{"will qos 3", connect(0x1e, 0x00, 0x01, 'a', 0x00, 0x01, 'w')},
		{"will topic with wildcard", connect(0x06, will...)},
	}
	for _, tc := range cases {
		raw := dialRaw(t, addr, packet.V311)
		raw.sendBytes(tc.bytes)
		res := raw.awaitClose(waitTimeout)
		if !res.closed {
			t.Errorf("%s: connection left open", tc.name)
			continue
		}
		for _, p := range res.other {
			if ca, ok := p.(*packet.Connack); ok && ca.ReasonCode == 0 {
				t.Errorf("%s: CONNACK accepted the connection", tc.name)
			}
		}
	}
}
