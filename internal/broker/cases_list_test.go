package broker

import (
	"testing"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// closedV expects the connection closed, after DISCONNECT code for v5.
func closedV(v packet.Version, c int, code packet.Code) step {
	if v == packet.V5 {
		return closedWith(c, code)
	}
	return closed(c)
}

// pick returns a for v5 and b for 3.1.1.
func pick(v packet.Version, a, b byte) byte {
	if v == packet.V5 {
		return a
	}
	return b
}

// bothVersions are the scenarios every protocol version must pass.
func bothVersions(v packet.Version) []pcase {
	n := func(s string) string { return vname(v) + "/" + s }
	connectAs := func(c int, id string, clean bool) []step {
		p := &packet.Connect{Version: v, CleanStart: clean, KeepAlive: 60, ClientID: id}
		if v == packet.V5 && !clean {
			p.Props.SessionExpiry = 300
			p.Props.Set(packet.PropSessionExpiry)
		}
		return []step{dial(c, v), send(c, p)}
	}
	return []pcase{
		{name: n("MQTT-3.1.0-1/first packet not CONNECT"), steps: flat(dial(0, v), send(0, &packet.Pingreq{}), closed(0))},
		{name: n("MQTT-3.1.0-2/second CONNECT"), steps: flat(connS(0, v, "c"),
			send(0, &packet.Connect{Version: v, CleanStart: true, ClientID: "c"}), closedV(v, 0, packet.ErrProtocolError))},
		{name: n("MQTT-3.1.3-8/empty client id without clean session"), steps: flat(connectAs(0, "", false),
			want(0, &packet.Connack{ReasonCode: pick(v, 0, 0x02)}), pick2(v, alive(0), closed(0)))},
		{name: n("MQTT-3.1.3-6/empty client id assigned"), steps: flat(connS(0, v, ""))},
		{name: n("client id too long"), cfg: func(c *config.MQTT) { c.MaxClientIDLength = 4 },
			steps: flat(connectAs(0, "toolong", true), want(0, &packet.Connack{ReasonCode: pick(v, 0x85, 0x02)}), closed(0))},
		{name: n("anonymous refused"), opts: func(o *Options) { o.AllowAnonymous = false },
			steps: flat(connectAs(0, "a", true), want(0, &packet.Connack{ReasonCode: pick(v, 0x86, 0x04)}), closed(0))},
		{name: n("max connections"), cfg: func(c *config.MQTT) { c.MaxConnections = 1 },
			steps: flat(connS(0, v, "a"), connectAs(1, "b", true), want(1, &packet.Connack{ReasonCode: pick(v, 0x97, 0x03)}), closed(1))},
		{name: n("MQTT-3.12.4-1/ping"), steps: flat(connS(0, v, "a"), send(0, &packet.Pingreq{}), want(0, &packet.Pingresp{}))},
		{name: n("MQTT-4.3.1/qos 0 both ways"), steps: flat(connS(0, v, "s"), sub(0, 1, "a/b", 0, 0), connS(1, v, "p"),
			send(1, pub("a/b", "x", 0, 0)), want(0, pub("a/b", "x", 0, 0)))},
		{name: n("MQTT-4.3.2/qos 1 both ways"), steps: flat(connS(0, v, "s"), sub(0, 1, "a/+", 1, 1), connS(1, v, "p"),
			send(1, pub("a/b", "x", 1, 7)), want(1, ack(packet.PUBACK, 7, 0)),
			want(0, pub("a/b", "x", 1, 1)), send(0, ack(packet.PUBACK, 1, 0)), markerTo(1, 0, "a/b", 1))},
		{name: n("MQTT-4.3.3/qos 2 both ways"), steps: flat(connS(0, v, "s"), sub(0, 1, "a/#", 2, 2), connS(1, v, "p"),
			send(1, pub("a/b", "x", 2, 9)), want(1, ack(packet.PUBREC, 9, 0)),
			want(0, pub("a/b", "x", 2, 1)), send(0, ack(packet.PUBREC, 1, 0)), want(0, ack(packet.PUBREL, 1, 0)),
			send(0, ack(packet.PUBCOMP, 1, 0)),
			send(1, ack(packet.PUBREL, 9, 0)), want(1, ack(packet.PUBCOMP, 9, 0)))},
		{name: n("MQTT-4.3.3-9/qos 2 duplicate not re-routed"), steps: flat(connS(0, v, "s"), sub(0, 1, "a", 2, 2), connS(1, v, "p"),
			send(1, pub("a", "x", 2, 9)), want(1, ack(packet.PUBREC, 9, 0)), want(0, pub("a", "x", 2, 1)),
			send(1, &packet.Publish{Topic: "a", Payload: []byte("x"), QoS: 2, PacketID: 9, Dup: true}), want(1, ack(packet.PUBREC, 9, 0)),
			send(1, ack(packet.PUBREL, 9, 0)), want(1, ack(packet.PUBCOMP, 9, 0)), markerTo(1, 0, "a", 2))},
		{name: n("MQTT-3.8.4-8/delivered qos is the minimum"), steps: flat(connS(0, v, "s"), sub(0, 1, "a", 0, 0), connS(1, v, "p"),
			send(1, pub("a", "x", 2, 3)), want(1, ack(packet.PUBREC, 3, 0)), want(0, pub("a", "x", 0, 0)))},
		{name: n("MQTT-3.3.1-5/retained sent on subscribe"), steps: flat(connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "r/1", Payload: []byte("kept"), QoS: 1, PacketID: 1, Retain: true}), want(1, ack(packet.PUBACK, 1, 0)),
			connS(0, v, "s"), sub(0, 1, "r/#", 1, 1), want(0, &packet.Publish{Topic: "r/1", Payload: []byte("kept"), QoS: 1, Retain: true}))},
		{name: n("MQTT-3.3.1-6/empty retained clears"), steps: flat(connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "r/1", Payload: []byte("kept"), QoS: 1, PacketID: 1, Retain: true}), want(1, ack(packet.PUBACK, 1, 0)),
			send(1, &packet.Publish{Topic: "r/1", QoS: 1, PacketID: 2, Retain: true}), want(1, ack(packet.PUBACK, 2, 0)),
			connS(0, v, "s"), sub(0, 1, "r/#", 1, 1), markerTo(0, 0, "r/marker", 0))},
		{name: n("MQTT-3.3.1-9/retain flag cleared for live subscribers"), steps: flat(connS(0, v, "s"), sub(0, 1, "r", 0, 0), connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "r", Payload: []byte("x"), Retain: true}), want(0, pub("r", "x", 0, 0)))},
		{name: n("MQTT-3.8.3-1/invalid filter"), steps: flat(connS(0, v, "s"), sub(0, 1, "a/#/b", 0, pick(v, 0x8F, 0x80)))},
		{name: n("MQTT-3.3.2-2/wildcard in topic name"), steps: flat(connS(0, v, "p"),
			step{c: 0, raw: rawWildcardPublish(v)}, closedV(v, 0, packet.ErrTopicNameInvalid))},
		{name: n("MQTT-4.7.2/clients cannot publish to $ topics"), steps: flat(connS(0, v, "s"), sub(0, 1, "$SYS/#", 0, 0), sub(0, 2, "m", 0, 0),
			connS(1, v, "p"), send(1, pub("$SYS/x", "x", 1, 5)), want(1, ack(packet.PUBACK, 5, pick(v, 0x87, 0))), markerTo(1, 0, "m", 0))},
		{name: n("MQTT-4.7.2-1/wildcard does not match $SYS"), steps: flat(connS(0, v, "s"), sub(0, 1, "#", 0, 0),
			connS(1, v, "p"), sub(1, 1, "+/broker/#", 0, 0), markerTo(0, 0, "m", 0), markerTo(1, 1, "m/broker/m", 0))},
		{name: n("MQTT-3.10.4/unsubscribe"), steps: flat(connS(0, v, "s"), sub(0, 1, "a", 0, 0),
			send(0, &packet.Unsubscribe{PacketID: 2, Filters: []string{"a", "b"}}),
			want(0, &packet.Unsuback{PacketID: 2, ReasonCodes: unsubCodes(v)}), sub(0, 3, "m", 0, 0),
			connS(1, v, "p"), send(1, pub("a", "x", 0, 0)), markerTo(1, 0, "m", 0))},
		{name: n("MQTT-3.1.2-10/no will after DISCONNECT"), steps: flat(connS(0, v, "s"), sub(0, 1, "will", 0, 0),
			connS(1, v, "w", withWill("will", "bye")), send(1, &packet.Disconnect{}), closed(1), connected(1),
			connS(2, v, "p"), markerTo(2, 0, "will", 0))},
		{name: n("MQTT-3.1.2-8/will on abnormal close"), steps: flat(connS(0, v, "s"), sub(0, 1, "will", 1, 1),
			connS(1, v, "w", withWill("will", "bye")), send(1, &packet.Connect{Version: v, ClientID: "w"}), closed(1),
			want(0, pub("will", "bye", 0, 0)))},
		{name: n("MQTT-3.1.4-3/takeover"), steps: flat(connS(0, v, "same"), connS(1, v, "same"),
			closedV(v, 0, packet.ErrSessionTakenOver), send(1, &packet.Pingreq{}), want(1, &packet.Pingresp{}))},
		{name: n("MQTT-3.2.2-2/session present on resume"), steps: flat(connectAs(0, "p1", false), want(0, &packet.Connack{}),
			sub(0, 1, "q", 1, 1), send(0, &packet.Disconnect{}), closed(0),
			connS(1, v, "pub"), send(1, pub("q", "queued", 1, 1)), want(1, ack(packet.PUBACK, 1, 0)),
			connectAs(2, "p1", false), want(2, &packet.Connack{SessionPresent: true}), want(2, pub("q", "queued", 1, 0)))},
		{name: n("MQTT-3.2.2-1/clean start discards"), steps: flat(connectAs(0, "p1", false), want(0, &packet.Connack{}),
			sub(0, 1, "q", 1, 1), send(0, &packet.Disconnect{}), closed(0),
			connectAs(2, "p1", true), want(2, &packet.Connack{}), sub(2, 1, "m", 0, 0),
			connS(1, v, "pub"), send(1, pub("q", "x", 0, 0)), markerTo(1, 2, "m", 0))},
		{name: n("max packet size inbound"), cfg: func(c *config.MQTT) { c.MaxPacketSize = 64 },
			steps: flat(connS(0, v, "p"), send(0, pub("a", string(make([]byte, 100)), 0, 0)), closedV(v, 0, packet.ErrPacketTooLarge))},
		{name: n("max subscriptions"), cfg: func(c *config.MQTT) { c.MaxSubscriptionsPerClient = 1 },
			steps: flat(connS(0, v, "s"), sub(0, 1, "a", 0, 0), sub(0, 2, "b", 0, pick(v, 0x97, 0x80)), sub(0, 3, "a", 1, 1))},
		{name: n("max qos grant"), cfg: func(c *config.MQTT) { c.MaxQoS = 1 },
			steps: flat(connS(0, v, "s"), sub(0, 1, "a", 2, 1))},
		{name: n("shared subscription round robin"), steps: flat(connS(0, v, "m1"), sub(0, 1, "$share/g/t", 0, 0), sub(0, 2, "m1", 0, 0),
			connS(1, v, "m2"), sub(1, 1, "$share/g/t", 0, 0), sub(1, 2, "m2", 0, 0), connS(2, v, "p"),
			send(2, pub("t", "1", 0, 0)), send(2, pub("t", "2", 0, 0)),
			want(0, pub("t", "1", 0, 0)), want(1, pub("t", "2", 0, 0)), markerTo(2, 0, "m1", 0), markerTo(2, 1, "m2", 0))},
		{name: n("MQTT-4.4.0-1/in-flight re-sent with DUP"), steps: flat(connectAs(0, "p1", false), want(0, &packet.Connack{}),
			sub(0, 1, "q", 1, 1), connS(1, v, "pub"), send(1, pub("q", "x", 1, 1)), want(1, ack(packet.PUBACK, 1, 0)),
			want(0, pub("q", "x", 1, 1)), connectAs(2, "p1", false), want(2, &packet.Connack{SessionPresent: true}),
			want(2, &packet.Publish{Topic: "q", Payload: []byte("x"), QoS: 1, PacketID: 1, Dup: true}))},
		{name: n("MQTT-4.3.3/pubrel re-sent on resume"), steps: flat(connectAs(0, "p1", false), want(0, &packet.Connack{}),
			sub(0, 1, "q", 2, 2), connS(1, v, "pub"), send(1, pub("q", "x", 2, 1)), want(1, ack(packet.PUBREC, 1, 0)),
			want(0, pub("q", "x", 2, 1)), send(0, ack(packet.PUBREC, 1, 0)), want(0, ack(packet.PUBREL, 1, 0)),
			connectAs(2, "p1", false), want(2, &packet.Connack{SessionPresent: true}), want(2, ack(packet.PUBREL, 1, 0)))},
	}
}

func pick2(v packet.Version, a, b step) step {
	if v == packet.V5 {
		return a
	}
	return b
}

func rawWildcardPublish(v packet.Version) []byte {
	if v == packet.V5 {
		return []byte{0x30, 6, 0, 3, 'a', '/', '+', 0}
	}
	return []byte{0x30, 5, 0, 3, 'a', '/', '+'}
}

func unsubCodes(v packet.Version) []byte {
	if v == packet.V5 {
		return []byte{0, 0x11}
	}
	return nil
}

func withWill(topic, payload string) func(*packet.Connect) {
	return func(p *packet.Connect) {
		p.WillFlag, p.WillTopic, p.WillPayload = true, topic, []byte(payload)
	}
}

func withProps(f func(*packet.Properties)) func(*packet.Connect) {
	return func(p *packet.Connect) { f(&p.Props) }
}

// v5Cases are the scenarios of MQTT 5 features.
func v5Cases() []pcase {
	v := packet.V5
	subOpt := func(c int, pid uint16, s packet.Subscription, id uint32, code byte) []step {
		p := &packet.Subscribe{PacketID: pid, Subscriptions: []packet.Subscription{s}}
		if id != 0 {
			p.Props.SubscriptionIDs = []uint32{id}
		}
		return []step{send(c, p), want(c, &packet.Suback{PacketID: pid, ReasonCodes: []byte{code}})}
	}
	aliasPub := func(topic string, alias uint16, payload string) *packet.Publish {
		p := pub(topic, payload, 0, 0)
		p.Props.TopicAlias = alias
		p.Props.Set(packet.PropTopicAlias)
		return p
	}
	return []pcase{
		{name: "v31/MQIsdp connect and publish", steps: flat(connS(0, packet.V31, "old"), sub(0, 1, "a", 1, 1),
			connS(1, v, "p"), send(1, pub("a", "x", 1, 1)), want(1, ack(packet.PUBACK, 1, 0)), want(0, pub("a", "x", 1, 1)))},
		{name: "v311/MQTT-3.1.2-2/unsupported protocol level 2", steps: flat(dial(0, packet.V311),
			step{c: 0, raw: []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 2, 2, 0, 60, 0, 1, 'a'}},
			want(0, &packet.Connack{ReasonCode: 0x01}), closed(0))},
		{name: "v5/MQTT-3.1.2-2/unsupported protocol version", steps: flat(dial(0, v),
			step{c: 0, raw: []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 60, 0, 1, 'a'}},
			want(0, &packet.Connack{ReasonCode: 0x84}), closed(0))},
		{name: "v5/MQTT-3.2.2-16/assigned client identifier", steps: flat(dial(0, v),
			send(0, &packet.Connect{Version: v, CleanStart: true}),
			wantCheck(0, &packet.Connack{}, func(t testing.TB, p packet.Packet) {
				if p.(*packet.Connack).Props.AssignedClientID == "" {
					t.Fatal("no Assigned Client Identifier")
				}
			}))},
		{name: "v5/MQTT-3.2.2-21/server keep alive", cfg: func(c *config.MQTT) { c.MaxKeepAlive = 10 },
			steps: flat(dial(0, v), send(0, &packet.Connect{Version: v, CleanStart: true, ClientID: "k", KeepAlive: 60}),
				wantCheck(0, &packet.Connack{}, func(t testing.TB, p packet.Packet) {
					if ka := p.(*packet.Connack).Props.ServerKeepAlive; ka != 10 {
						t.Fatalf("server keep alive %d", ka)
					}
				}))},
		{name: "v5/connack properties", cfg: func(c *config.MQTT) { c.MaxQoS = 1; c.RetainAvailable = false; c.ReceiveMaximum = 5 },
			steps: flat(dial(0, v), send(0, &packet.Connect{Version: v, CleanStart: true, ClientID: "k"}),
				wantCheck(0, &packet.Connack{}, func(t testing.TB, p packet.Packet) {
					pr := p.(*packet.Connack).Props
					if pr.MaximumQoS != 1 || !pr.Has(packet.PropRetainAvailable) || pr.RetainAvailable != 0 || pr.ReceiveMaximum != 5 || pr.TopicAliasMaximum != 10 {
						t.Fatalf("connack props %+v", pr)
					}
				}))},
		{name: "v5/MQTT-3.1.2-28/response information", steps: flat(dial(0, v),
			send(0, &packet.Connect{Version: v, CleanStart: true, ClientID: "r", Props: packet.Properties{Present: 1 << packet.PropRequestResponseInfo, RequestResponseInfo: 1}}),
			wantCheck(0, &packet.Connack{}, func(t testing.TB, p packet.Packet) {
				if p.(*packet.Connack).Props.ResponseInfo == "" {
					t.Fatal("no response information")
				}
			}))},
		{name: "v5/MQTT-3.3.4-3/overlapping subscriptions deliver once with every identifier", steps: flat(connS(0, v, "s"),
			subOpt(0, 1, packet.Subscription{Filter: "a/+", QoS: 1}, 1, 1), subOpt(0, 2, packet.Subscription{Filter: "a/#", QoS: 2}, 2, 2),
			connS(1, v, "p"), send(1, pub("a/b", "x", 2, 1)), want(1, ack(packet.PUBREC, 1, 0)),
			want(0, &packet.Publish{Topic: "a/b", Payload: []byte("x"), QoS: 2, Props: packet.Properties{SubscriptionIDs: []uint32{1, 2}}}), markerTo(1, 0, "a/b", 2))},
		{name: "v5/MQTT-3.8.3-3/no local", steps: flat(connS(0, v, "s"),
			subOpt(0, 1, packet.Subscription{Filter: "a", NoLocal: true}, 0, 0), send(0, pub("a", "x", 0, 0)), alive(0),
			connS(1, v, "p"), markerTo(1, 0, "a", 0))},
		{name: "v5/MQTT-3.8.3-4/no local on shared subscription", steps: flat(connS(0, v, "s"),
			send(0, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "$share/g/a", NoLocal: true}}}),
			closedWith(0, packet.ErrProtocolError))},
		{name: "v5/MQTT-3.3.1-12/retain as published", steps: flat(connS(0, v, "s"),
			subOpt(0, 1, packet.Subscription{Filter: "r", RetainAsPublished: true}, 0, 0), connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "r", Payload: []byte("x"), Retain: true}),
			want(0, &packet.Publish{Topic: "r", Payload: []byte("x"), Retain: true}))},
		{name: "v5/MQTT-3.3.1-10/retain handling 1", steps: flat(connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "r", Payload: []byte("x"), Retain: true}), send(1, &packet.Pingreq{}), want(1, &packet.Pingresp{}),
			connS(0, v, "s"), subOpt(0, 1, packet.Subscription{Filter: "r", RetainHandling: 1}, 0, 0),
			want(0, &packet.Publish{Topic: "r", Payload: []byte("x"), Retain: true}),
			subOpt(0, 2, packet.Subscription{Filter: "r", RetainHandling: 1}, 0, 0), markerTo(0, 0, "r", 0))},
		{name: "v5/MQTT-3.3.1-11/retain handling 2", steps: flat(connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "r", Payload: []byte("x"), Retain: true}), send(1, &packet.Pingreq{}), want(1, &packet.Pingresp{}),
			connS(0, v, "s"), subOpt(0, 1, packet.Subscription{Filter: "r", RetainHandling: 2}, 0, 0), markerTo(0, 0, "r", 0))},
		{name: "v5/MQTT-3.3.2-8/topic alias 0", steps: flat(connS(0, v, "p"), send(0, aliasPub("a", 0, "x")), closedWith(0, packet.ErrTopicAliasInvalid))},
		{name: "v5/MQTT-3.2.2-17/topic alias over maximum", steps: flat(connS(0, v, "p"), send(0, aliasPub("a", 11, "x")), closedWith(0, packet.ErrTopicAliasInvalid))},
		{name: "v5/topic alias unknown", steps: flat(connS(0, v, "p"), send(0, aliasPub("", 3, "x")), closedWith(0, packet.ErrProtocolError))},
		{name: "v5/MQTT-3.3.2-12/topic alias inbound", steps: flat(connS(0, v, "s"), sub(0, 1, "a", 0, 0), connS(1, v, "p"),
			send(1, aliasPub("a", 3, "1")), send(1, aliasPub("", 3, "2")), want(0, pub("a", "1", 0, 0)), want(0, pub("a", "2", 0, 0)))},
		{name: "v5/topic alias outbound", steps: flat(connS(0, v, "s", withProps(func(p *packet.Properties) {
			p.TopicAliasMaximum = 2
			p.Set(packet.PropTopicAliasMaximum)
		})), sub(0, 1, "a", 0, 0), connS(1, v, "p"), send(1, pub("a", "1", 0, 0)), send(1, pub("a", "2", 0, 0)),
			wantCheck(0, pub("a", "1", 0, 0), func(t testing.TB, p packet.Packet) {
				if p.(*packet.Publish).Props.TopicAlias != 1 {
					t.Fatal("first publish without alias")
				}
			}),
			wantCheck(0, pub("", "2", 0, 0), func(t testing.TB, p packet.Packet) {
				if p.(*packet.Publish).Props.TopicAlias != 1 {
					t.Fatal("second publish not by alias")
				}
			}))},
		{name: "v5/MQTT-3.3.4-9/receive maximum exceeded", cfg: func(c *config.MQTT) { c.ReceiveMaximum = 1 },
			steps: flat(connS(0, v, "p"), send(0, pub("a", "1", 2, 1)), want(0, ack(packet.PUBREC, 1, 0)),
				send(0, pub("a", "2", 2, 2)), closedWith(0, packet.ErrReceiveMaximumExceeded))},
		{name: "v5/MQTT-3.1.2-25/maximum packet size outbound", steps: flat(connS(0, v, "s", withProps(func(p *packet.Properties) {
			p.MaximumPacketSize = 40
			p.Set(packet.PropMaximumPacketSize)
		})), sub(0, 1, "a", 1, 1), connS(1, v, "p"), send(1, pub("a", string(make([]byte, 60)), 1, 1)), want(1, ack(packet.PUBACK, 1, 0)),
			send(1, pub("a", "small", 1, 2)), want(1, ack(packet.PUBACK, 2, 0)), want(0, pub("a", "small", 1, 0)))},
		{name: "v5/MQTT-3.2.2-11/qos not supported", cfg: func(c *config.MQTT) { c.MaxQoS = 1 },
			steps: flat(connS(0, v, "p"), send(0, pub("a", "x", 2, 1)), closedWith(0, packet.ErrQoSNotSupported))},
		{name: "v5/MQTT-3.2.2-14/retain not supported", cfg: func(c *config.MQTT) { c.RetainAvailable = false },
			steps: flat(connS(0, v, "p"), send(0, &packet.Publish{Topic: "a", Payload: []byte("x"), Retain: true}), closedWith(0, packet.ErrRetainNotSupported))},
		{name: "v5/subscription identifiers not supported", cfg: func(c *config.MQTT) { c.SubscriptionIdentifiers = false },
			steps: flat(connS(0, v, "s"), send(0, &packet.Subscribe{PacketID: 1, Props: packet.Properties{SubscriptionIDs: []uint32{4}},
				Subscriptions: []packet.Subscription{{Filter: "a"}}}), closedWith(0, packet.ErrSubscriptionIDsNotSupported))},
		{name: "v5/wildcard subscriptions not supported", cfg: func(c *config.MQTT) { c.WildcardSubscriptions = false },
			steps: flat(connS(0, v, "s"), sub(0, 1, "a/#", 0, 0xA2))},
		{name: "v5/shared subscriptions not supported", cfg: func(c *config.MQTT) { c.SharedSubscriptions = false },
			steps: flat(connS(0, v, "s"), sub(0, 1, "$share/g/a", 0, 0x9E))},
		{name: "v5/MQTT-3.3.2-4/payload format invalid", steps: flat(connS(0, v, "p"),
			send(0, &packet.Publish{Topic: "a", Payload: []byte{0xff, 0xfe}, QoS: 1, PacketID: 1, Props: packet.Properties{Present: 1 << packet.PropPayloadFormat, PayloadFormat: 1}}),
			want(0, ack(packet.PUBACK, 1, 0x99)))},
		{name: "v5/pubrel for unknown packet id", steps: flat(connS(0, v, "p"), send(0, ack(packet.PUBREL, 42, 0)), want(0, ack(packet.PUBCOMP, 42, 0x92)))},
		{name: "v5/MQTT-3.14.2-2/session expiry from zero on DISCONNECT", steps: flat(connS(0, v, "p"),
			send(0, &packet.Disconnect{Props: packet.Properties{Present: 1 << packet.PropSessionExpiry, SessionExpiry: 30}}),
			closedWith(0, packet.ErrProtocolError))},
		{name: "v5/MQTT-3.14.4-3/DISCONNECT 0x04 sends the will", steps: flat(connS(0, v, "s"), sub(0, 1, "will", 0, 0),
			connS(1, v, "w", withWill("will", "bye")), send(1, &packet.Disconnect{ReasonCode: 0x04}), closed(1), want(0, pub("will", "bye", 0, 0)))},
		{name: "v5/MQTT-3.3.2-6/message expiry sent as remaining", steps: flat(connS(0, v, "s"), sub(0, 1, "a", 0, 0), connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "a", Payload: []byte("x"), Props: packet.Properties{Present: 1 << packet.PropMessageExpiry, MessageExpiry: 100}}),
			wantCheck(0, pub("a", "x", 0, 0), func(t testing.TB, p packet.Packet) {
				if e := p.(*packet.Publish).Props.MessageExpiry; e == 0 || e > 100 {
					t.Fatalf("message expiry %d", e)
				}
			}))},
		{name: "v5/MQTT-3.3.2-15/request response properties passed through", steps: flat(connS(0, v, "s"), sub(0, 1, "a", 0, 0), connS(1, v, "p"),
			send(1, &packet.Publish{Topic: "a", Payload: []byte("x"), Props: packet.Properties{
				Present:       1<<packet.PropResponseTopic | 1<<packet.PropCorrelationData | 1<<packet.PropContentType | 1<<packet.PropPayloadFormat,
				ResponseTopic: "reply", CorrelationData: []byte{1, 2}, ContentType: "text/plain", PayloadFormat: 1,
				User: []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}}),
			wantCheck(0, pub("a", "x", 0, 0), func(t testing.TB, p packet.Packet) {
				pr := p.(*packet.Publish).Props
				if pr.ResponseTopic != "reply" || string(pr.CorrelationData) != "\x01\x02" || pr.ContentType != "text/plain" ||
					pr.PayloadFormat != 1 || len(pr.User) != 2 || pr.User[1].Value != "w" {
					t.Fatalf("props %+v", pr)
				}
			}))},
		{name: "v5/MQTT-3.1.2-29/no reason string without problem information", steps: flat(connS(0, v, "p", withProps(func(p *packet.Properties) {
			p.RequestProblemInfo = 0
			p.Set(packet.PropRequestProblemInfo)
		})), send(0, pub("$SYS/x", "x", 1, 1)), wantCheck(0, ack(packet.PUBACK, 1, 0x87), func(t testing.TB, p packet.Packet) {
			if p.(*packet.Ack).Props.ReasonString != "" {
				t.Fatal("reason string sent")
			}
		}))},
		{name: "v5/enhanced auth without authenticator", steps: flat(dial(0, v),
			send(0, &packet.Connect{Version: v, CleanStart: true, ClientID: "a", Props: packet.Properties{AuthMethod: "SCRAM"}}),
			want(0, &packet.Connack{ReasonCode: 0x8C}), closed(0))},
	}
}
