package broker

import "github.com/culexmq/culex/internal/mqtt/packet"

// Negative checks ("c receives nothing") are tied to a positive event, not
// to a quiet window: after whatever must not reach c, a client publishes a
// marker message on a topic c subscribes to, and c must receive the marker
// with nothing before it. This is sound because the broker handles one
// connection's packets in the order it reads them, routes the PUBLISHes
// of one client in that order and queues each recipient's copies, like all
// its outbound packets, in order [MQTT-4.6.0-5]: whatever the earlier
// packets sent c is ahead of the marker. The order holds within one QoS: a
// marker at QoS 0 passes a Receive Maximum window that holds QoS 1 back.

// markerPayload is the payload of every marker message.
const markerPayload = "marker"

// markerID is the packet id of markers at QoS 1 and 2.
const markerID = 0xfffe

// publishMarker publishes the marker on topic at qos, waiting for the
// PUBACK or PUBREC (the broker has routed it by then). Use the QoS of what
// must not arrive: MQTT orders messages of one QoS.
func (c *client) publishMarker(topic string, qos byte) {
	c.t.Helper()
	c.publish(topic, markerPayload, qos, false, markerID)
	switch qos {
	case 1:
		c.expect(packet.PUBACK)
	case 2:
		c.expect(packet.PUBREC)
	}
}

// expectMarker fails unless the next packet c receives, PINGRESP aside, is
// the marker on topic.
func (c *client) expectMarker(topic string) {
	c.t.Helper()
	for {
		p, err := c.read(waitTime)
		if err != nil {
			c.t.Fatalf("want the marker on %s: %v", topic, err)
		}
		if p.Type() == packet.PINGRESP {
			continue
		}
		m, ok := p.(*packet.Publish)
		switch {
		case !ok:
			c.t.Fatalf("got %v %+v before the marker on %s", p.Type(), p, topic)
		case m.Topic != topic || string(m.Payload) != markerPayload:
			c.t.Fatalf("got PUBLISH %s %q (qos %d) before the marker on %s", m.Topic, m.Payload, m.QoS, topic)
		}
		return
	}
}

// expectAlive fails unless c's connection is open and nothing but the
// PINGRESP answers a PINGREQ: the broker answers a connection's packets in
// order, so anything its earlier packets caused comes first.
func (c *client) expectAlive() {
	c.t.Helper()
	c.send(&packet.Pingreq{})
	c.expect(packet.PINGRESP)
}
