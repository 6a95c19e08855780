package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// rawConn speaks MQTT over a bare TCP socket through the packet codec, for
// the tests a well-behaved client library cannot express: malformed packets,
// silence, exact wire sizes and exact reason codes.
type rawConn struct {
	net.Conn
	t *testing.T
	v packet.Version
	r *bufio.Reader
	// present is the CONNACK's session present, where the dial recorded it.
	present bool
}

func dialRaw(t *testing.T, addr string, v packet.Version) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{Conn: conn, t: t, v: v, r: bufio.NewReader(conn)}
}

// send encodes p for the connection's version and writes it.
func (c *rawConn) send(p packet.Packet) {
	c.t.Helper()
	b, err := p.Encode(nil, c.v)
	if err != nil {
		c.t.Fatalf("encode %v: %v", p.Type(), err)
	}
	c.sendBytes(b)
}

func (c *rawConn) sendBytes(b []byte) {
	c.t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readPacket reads one packet within timeout and returns it with its size on
// the wire. It parses the fixed header itself so it can report exact sizes
// and decode whatever the broker sends.
func (c *rawConn) readPacket(timeout time.Duration) (packet.Packet, int, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b0, err := c.r.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	remaining, mult, n := 0, 1, 1
	for i := 0; ; i++ {
		if i == 4 {
			return nil, n, fmt.Errorf("remaining length over 4 bytes")
		}
		d, err := c.r.ReadByte()
		if err != nil {
			return nil, n, err
		}
		n++
		remaining += int(d&0x7f) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, remaining)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, n, err
	}
	fh := packet.FixedHeader{Type: packet.Type(b0 >> 4), Flags: b0 & 0x0f, Remaining: remaining}
	p, err := packet.Decode(fh, body, c.v)
	if err != nil {
		return nil, n + remaining, &decodeError{fh.Type, body, err}
	}
	return p, n + remaining, nil
}

// decodeError is a whole packet read from the broker that the codec refused;
// the stream is still in step after it.
type decodeError struct {
	typ  packet.Type
	body []byte
	err  error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("decode %v body %x: %v", e.typ, e.body, e.err)
}

// expect reads the next packet, skipping PINGRESP unless that is what it
// expects, and fails unless it is a T.
func expect[T packet.Packet](c *rawConn) T {
	c.t.Helper()
	for {
		p, _, err := c.readPacket(waitTimeout)
		if err != nil {
			var zero T
			c.t.Fatalf("reading %T: %v", zero, err)
		}
		got, ok := p.(T)
		if _, ping := p.(*packet.Pingresp); ping && !ok {
			continue
		}
		if !ok {
			var zero T
			c.t.Fatalf("got %v %+v, want %T", p.Type(), p, zero)
		}
		return got
	}
}

// connect sends CONNECT and returns the CONNACK.
func (c *rawConn) connect(cp *packet.Connect) *packet.Connack {
	c.t.Helper()
	if cp.ProtocolName == "" {
		cp.ProtocolName = "MQTT"
	}
	if cp.Version == 0 {
		cp.Version = c.v
	}
	c.send(cp)
	return expect[*packet.Connack](c)
}

// mustConnect connects and fails unless the CONNACK accepts.
func (c *rawConn) mustConnect(cp *packet.Connect) *packet.Connack {
	c.t.Helper()
	ca := c.connect(cp)
	if ca.ReasonCode != 0 {
		c.t.Fatalf("CONNACK reason 0x%02x, want 0", ca.ReasonCode)
	}
	return ca
}

// subscribe sends SUBSCRIBE and returns the SUBACK reason codes.
func (c *rawConn) subscribe(id uint16, props packet.Properties, subs ...packet.Subscription) []byte {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: id, Props: props, Subscriptions: subs})
	sa := expect[*packet.Suback](c)
	if sa.PacketID != id {
		c.t.Fatalf("SUBACK packet id %d, want %d", sa.PacketID, id)
	}
	return sa.ReasonCodes
}

// closeResult is how the broker ended a connection.
type closeResult struct {
	closed     bool          // the socket was closed by the broker
	after      time.Duration // when, from the call
	disconnect *packet.Disconnect
	other      []packet.Packet // anything else received before the close
	undecoded  []error         // packets received that did not decode
	err        error           // the read error that ended the wait
}

// awaitClose reads until the broker closes the connection or timeout passes,
// collecting a DISCONNECT if one comes first.
func (c *rawConn) awaitClose(timeout time.Duration) closeResult {
	start := time.Now()
	deadline := start.Add(timeout)
	var res closeResult
	for {
		p, _, err := c.readPacket(time.Until(deadline))
		var de *decodeError
		if errors.As(err, &de) {
			res.undecoded = append(res.undecoded, err)
			continue
		}
		if err != nil {
			var ne net.Error
			res.err = err
			res.closed = !(errors.As(err, &ne) && ne.Timeout())
			res.after = time.Since(start)
			return res
		}
		if d, ok := p.(*packet.Disconnect); ok && res.disconnect == nil {
			res.disconnect = d
			continue
		}
		res.other = append(res.other, p)
	}
}

// mustClose fails unless the broker closes within timeout; with wantCodes a
// DISCONNECT with one of those reason codes must come first.
func (c *rawConn) mustClose(timeout time.Duration, wantCodes ...byte) closeResult {
	c.t.Helper()
	return c.checkClose(timeout, len(wantCodes) > 0, wantCodes)
}

// mayClose is mustClose where the DISCONNECT is optional (the spec says MAY)
// but, if sent, must carry one of wantCodes.
func (c *rawConn) mayClose(timeout time.Duration, wantCodes ...byte) closeResult {
	c.t.Helper()
	return c.checkClose(timeout, false, wantCodes)
}

func (c *rawConn) checkClose(timeout time.Duration, required bool, wantCodes []byte) closeResult {
	c.t.Helper()
	res := c.awaitClose(timeout)
	if !res.closed {
		c.t.Fatalf("connection still open after %v (received %v %v)", timeout, res.other, res.undecoded)
	}
	if res.disconnect == nil {
		if required {
			c.t.Fatalf("connection closed without DISCONNECT, want reason one of %x", wantCodes)
		}
		return res
	}
	if len(wantCodes) > 0 && !bytes.Contains(wantCodes, []byte{res.disconnect.ReasonCode}) {
		c.t.Fatalf("DISCONNECT reason 0x%02x (%q), want one of %x", res.disconnect.ReasonCode, res.disconnect.Props.ReasonString, wantCodes)
	}
	return res
}

// publishes reads PUBLISH packets (acknowledging none) until n arrive.
func (c *rawConn) publishes(n int) []*packet.Publish {
	c.t.Helper()
	var out []*packet.Publish
	for len(out) < n {
		out = append(out, expect[*packet.Publish](c))
	}
	return out
}

// publishMarker publishes the marker (helpers_test.go) on topic at qos,
// waiting for the PUBACK, or the PUBREC and PUBCOMP.
func (c *rawConn) publishMarker(topic string, qos byte) {
	c.t.Helper()
	p := &packet.Publish{Topic: topic, QoS: qos, Payload: []byte(markerPayload)}
	if qos > 0 {
		p.PacketID = 0xfffe
	}
	c.send(p)
	want := []packet.Type{packet.PUBACK}
	if qos == 2 {
		want = []packet.Type{packet.PUBREC, packet.PUBCOMP}
	}
	for i := 0; qos > 0 && i < len(want); i++ {
		if a := expect[*packet.Ack](c); a.Kind != want[i] || a.PacketID != p.PacketID {
			c.t.Fatalf("marker: got %v %d, want %v %d", a.Kind, a.PacketID, want[i], p.PacketID)
		}
		if want[i] == packet.PUBREC {
			c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: p.PacketID})
		}
	}
}

// untilMarker reads packets until the marker PUBLISH on topic, which it
// consumes (with a PUBACK, or a PUBREC whose PUBREL it leaves unread), and
// hands every other packet but PINGRESP to fn.
func (c *rawConn) untilMarker(topic string, fn func(packet.Packet)) {
	c.t.Helper()
	for {
		p, _, err := c.readPacket(waitTimeout)
		if err != nil {
			c.t.Fatalf("waiting for the marker on %s: %v", topic, err)
		}
		if pb, ok := p.(*packet.Publish); ok && pb.Topic == topic && string(pb.Payload) == markerPayload {
			switch pb.QoS {
			case 1:
				c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pb.PacketID})
			case 2:
				c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: pb.PacketID})
			}
			return
		}
		if _, ok := p.(*packet.Pingresp); !ok {
			fn(p)
		}
	}
}

// expectMarker fails unless the next packet, PINGRESP aside, is the marker
// on topic.
func (c *rawConn) expectMarker(topic string) {
	c.t.Helper()
	c.untilMarker(topic, func(p packet.Packet) {
		c.t.Helper()
		c.t.Fatalf("got %v %+v before the marker on %s", p.Type(), p, topic)
	})
}

// v5props returns Properties with the given uint32-valued property set.
func sessionExpiry(sec uint32) packet.Properties {
	var p packet.Properties
	p.SessionExpiry = sec
	p.Set(packet.PropSessionExpiry)
	return p
}

// rawConnect is a CONNECT with a 30 s keep-alive and no properties.
func rawConnect(id string, clean bool) *packet.Connect {
	return &packet.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30}
}

// subID returns SUBSCRIBE properties carrying Subscription Identifier id (0: none).
func subID(id uint32) packet.Properties {
	var p packet.Properties
	if id > 0 {
		p.SubscriptionIDs = []uint32{id}
		p.Set(packet.PropSubscriptionID)
	}
	return p
}

func rawSub(filter string, qos byte) packet.Subscription {
	return packet.Subscription{Filter: filter, QoS: qos}
}

// subscribeOrClose sends SUBSCRIBE and returns either the SUBACK codes or,
// if the broker answers by disconnecting, how it closed.
func (c *rawConn) subscribeOrClose(id uint16, subs ...packet.Subscription) ([]byte, *closeResult) {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: id, Subscriptions: subs})
	p, _, err := c.readPacket(waitTimeout)
	switch p := p.(type) {
	case *packet.Suback:
		return p.ReasonCodes, nil
	case *packet.Disconnect:
		res := c.awaitClose(waitTimeout)
		res.disconnect = p
		return nil, &res
	case nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("no SUBACK within %v", waitTimeout)
		}
		return nil, &closeResult{closed: true, err: err}
	default:
		c.t.Fatalf("got %v, want SUBACK", p.Type())
		return nil, nil
	}
}
