package broker

import (
	"fmt"
	"testing"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// step is one action or expectation of a protocol scenario on client c.
type step struct {
	c      int
	dial   packet.Version // open client c with this version
	send   packet.Packet
	raw    []byte
	want   packet.Packet // compared with matchPacket
	check  func(t testing.TB, p packet.Packet)
	closed bool  // the broker closes the connection
	discon *byte // with closed: a v5 DISCONNECT with this code comes first

	// Negative checks, each tied to a positive event (marker_test.go).
	pubMarker string                 // publish the marker on this topic
	markerQoS byte                   // at this QoS
	marker    string                 // the marker on this topic comes next
	alive     bool                   // a PINGREQ is answered with nothing before the PINGRESP
	until     func(*testBroker) bool // wait until it holds (any c)
}

// pcase is one protocol scenario: send these packets, expect those.
type pcase struct {
	name  string // the spec rule it checks
	cfg   func(*config.MQTT)
	opts  func(*Options)
	steps []step
}

func dial(c int, v packet.Version) step { return step{c: c, dial: v} }
func send(c int, p packet.Packet) step  { return step{c: c, send: p} }
func want(c int, p packet.Packet) step  { return step{c: c, want: p} }
func closed(c int) step                 { return step{c: c, closed: true} }
func closedWith(c int, code packet.Code) step {
	v := code.Value
	return step{c: c, closed: true, discon: &v}
}
func wantCheck(c int, p packet.Packet, f func(testing.TB, packet.Packet)) step {
	return step{c: c, want: p, check: f}
}

// markerTo has client p publish the marker on topic at qos and expects it
// next at client c, which subscribes to topic: nothing that p's (or c's)
// earlier packets caused reached c before it. p == c needs qos 0.
func markerTo(p, c int, topic string, qos byte) []step {
	return []step{{c: p, pubMarker: topic, markerQoS: qos}, {c: c, marker: topic}}
}

// alive expects client c's connection open with nothing waiting on it.
func alive(c int) step { return step{c: c, alive: true} }

// connected waits until the broker counts n connected clients: a client
// seen gone has had its will published or delayed.
func connected(n int64) step {
	return step{until: func(tb *testBroker) bool { return tb.Stats().ClientsConnected == n }}
}

// connS dials client c and connects it with clean start.
func connS(c int, v packet.Version, id string, opt ...func(*packet.Connect)) []step {
	p := &packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: id}
	for _, o := range opt {
		o(p)
	}
	return []step{dial(c, v), send(c, p), want(c, &packet.Connack{})}
}

func sub(c int, pid uint16, filter string, qos byte, code byte) []step {
	return []step{send(c, &packet.Subscribe{PacketID: pid, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}}),
		want(c, &packet.Suback{PacketID: pid, ReasonCodes: []byte{code}})}
}

func pub(topic, payload string, qos byte, pid uint16) *packet.Publish {
	return &packet.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, PacketID: pid}
}

func ack(kind packet.Type, pid uint16, code byte) *packet.Ack {
	return &packet.Ack{Kind: kind, PacketID: pid, ReasonCode: code}
}

func flat(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			out = append(out, p)
		case []step:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("flat: %T", p))
		}
	}
	return out
}

var versions = []packet.Version{packet.V311, packet.V5}

func vname(v packet.Version) string {
	if v == packet.V5 {
		return "v5"
	}
	return "v311"
}

// TestPacketCases runs the protocol scenario table.
func TestPacketCases(t *testing.T) {
	var cases []pcase
	for _, v := range versions {
		cases = append(cases, bothVersions(v)...)
	}
	cases = append(cases, v5Cases()...)
	for _, pc := range cases {
		t.Run(pc.name, func(t *testing.T) {
			t.Parallel()
			runCase(t, pc)
		})
	}
}

func runCase(t *testing.T, pc pcase) {
	opts := Options{Config: testConfig(), AllowAnonymous: true}
	if pc.cfg != nil {
		pc.cfg(&opts.Config)
	}
	if pc.opts != nil {
		pc.opts(&opts)
	}
	tb := startBroker(t, opts)
	clients := map[int]*client{}
	for i, s := range pc.steps {
		if s.until != nil {
			eventually(t, fmt.Sprintf("step %d", i), func() bool { return s.until(tb) })
			continue
		}
		c := clients[s.c]
		if s.dial != 0 {
			clients[s.c] = tb.dial(s.dial)
			continue
		}
		if c == nil {
			t.Fatalf("step %d: client %d not dialed", i, s.c)
		}
		switch {
		case s.send != nil:
			c.send(s.send)
		case s.raw != nil:
			c.write(s.raw)
		case s.want != nil:
			p, err := c.read(waitTime)
			if err != nil {
				t.Fatalf("step %d: client %d: want %v: %v", i, s.c, s.want.Type(), err)
			}
			if !matchPacket(s.want, p) {
				t.Fatalf("step %d: client %d: want %+v, got %v %+v", i, s.c, s.want, p.Type(), p)
			}
			if s.check != nil {
				s.check(t, p)
			}
		case s.pubMarker != "":
			c.publishMarker(s.pubMarker, s.markerQoS)
		case s.marker != "":
			c.expectMarker(s.marker)
		case s.alive:
			c.expectAlive()
		case s.closed:
			got := c.expectClosed()
			if s.discon != nil {
				if len(got) == 0 || got[len(got)-1].Type() != packet.DISCONNECT {
					t.Fatalf("step %d: want DISCONNECT 0x%02x before close, got %v", i, *s.discon, got)
				}
				if rc := got[len(got)-1].(*packet.Disconnect).ReasonCode; rc != *s.discon {
					t.Fatalf("step %d: want DISCONNECT 0x%02x, got 0x%02x", i, *s.discon, rc)
				}
			}
		}
	}
}
