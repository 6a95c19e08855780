package broker

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestOutAliasesLRU checks the outbound Topic Alias list against a naive
// LRU: with every alias taken, a new topic replaces the least recently
// used one, and every alias maps to one topic and back.
func TestOutAliasesLRU(t *testing.T) {
	for _, max := range []uint16{1, 2, 3, 8} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			var l outAliases
			var order []string // naive LRU: most recent first
			bound := map[uint16]string{}
			rng := rand.New(rand.NewPCG(uint64(max), 1))
			for step := range 2000 {
				topic := fmt.Sprintf("t/%d", rng.IntN(int(max)*3))
				a, hit := l.lookup(topic)
				if i := slices.Index(order, topic); (i >= 0) != hit {
					t.Fatalf("step %d: %q hit %v, naive %v", step, topic, hit, i >= 0)
				} else if hit {
					if bound[a] != topic {
						t.Fatalf("step %d: %q has alias %d, bound to %q", step, topic, a, bound[a])
					}
					order = slices.Insert(slices.Delete(order, i, i+1), 0, topic)
					continue
				}
				a = l.pick(max)
				if a < 1 || a > max {
					t.Fatalf("step %d: alias %d outside 1..%d", step, a, max)
				}
				full := len(order) == int(max)
				if full && bound[a] != order[len(order)-1] {
					t.Fatalf("step %d: replaced alias %d (%q), want the least recently used %q", step, a, bound[a], order[len(order)-1])
				}
				if step%7 == 3 {
					continue // not committed: the packet was dropped
				}
				if full {
					order = order[:len(order)-1]
				}
				l.commit(topic, a)
				bound[a] = topic
				order = slices.Insert(order, 0, topic)
				if len(l.byTopic) != len(order) {
					t.Fatalf("step %d: %d topics aliased, naive %d", step, len(l.byTopic), len(order))
				}
			}
		})
	}
}

// TestAliasNotBoundByDroppedCopy: a QoS 0 copy dropped for the outbound
// bound must not bind (or remap) an alias the client never sees. A v5
// subscriber with two aliases does not read while three topics flood it;
// then it reads everything, resolving aliases as a receiver must, and every
// payload (which names its topic) must arrive under its own topic.
func TestAliasNotBoundByDroppedCopy(t *testing.T) {
	tb := startBroker(t, Options{Config: testConfig(), AllowAnonymous: true, MaxOutboundBytes: 1024})
	s := tb.connect("slow", packet.V5, func(p *packet.Connect) {
		p.Props.TopicAliasMaximum = 2
		p.Props.Set(packet.PropTopicAliasMaximum)
	})
	s.subscribe(1, "a/+", 1) // the QoS 0 copies may be dropped; a/last may not
	p := tb.connect("p", packet.V5)
	pad := strings.Repeat("x", 32<<10)
	const n = 400
	rng := rand.New(rand.NewPCG(1, 2))
	for range n { // three topics over two aliases: hits and remaps
		topic := fmt.Sprintf("a/%d", rng.IntN(3))
		p.publish(topic, topic+" "+pad, 0, false, 0)
	}
	p.publish("a/last", "a/last", 1, false, 1)
	p.expect(packet.PUBACK)
	eventually(t, "outbound_full drops", func() bool { return tb.Stats().Drops["outbound_full"] > 0 })
	aliases := map[uint16]string{}
	got := 0
	for {
		m, err := s.read(waitTime)
		if err != nil {
			t.Fatalf("read after %d messages: %v", got, err)
		}
		pb := m.(*packet.Publish)
		topic := pb.Topic
		if a := pb.Props.TopicAlias; pb.Props.Has(packet.PropTopicAlias) {
			if topic != "" {
				aliases[a] = topic
			} else if topic = aliases[a]; topic == "" {
				t.Fatalf("message %d: alias %d was never mapped", got, a)
			}
		}
		name, _, _ := strings.Cut(string(pb.Payload), " ")
		if name != topic {
			t.Fatalf("message %d: payload of %q arrived as %q", got, name, topic)
		}
		got++
		if topic == "a/last" {
			break
		}
	}
	t.Logf("%d of %d messages delivered, %d dropped", got, n+1, tb.Stats().Drops["outbound_full"])
}
