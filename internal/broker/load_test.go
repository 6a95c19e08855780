package broker

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// scanLoad counts what Load reports by visiting every session, as a
// reference for the gauges.
func scanLoad(b *Broker) (map[connKey]int, int) {
	b.mu.Lock()
	list := make([]*session, 0, len(b.sessions))
	for _, s := range b.sessions {
		list = append(list, s)
	}
	b.mu.Unlock()
	conns, queued := map[connKey]int{}, 0
	for _, s := range list {
		s.mu.Lock()
		if s.conn != nil && s.info != nil {
			conns[connKey{s.info.Listener, s.info.Version}]++
		}
		queued += s.qlenLocked()
		s.mu.Unlock()
	}
	return conns, queued
}

// loadMaps returns Load's connections without the zero gauges.
func loadMaps(l Load) map[connKey]int {
	m := map[connKey]int{}
	for _, c := range l.Connections {
		if c.N != 0 {
			m[connKey{c.Listener, c.Version}] = c.N
		}
	}
	return m
}

// TestLoadGauges: the connection gauges by listener and protocol and the
// queued-messages gauge follow real clients connecting, queueing for an
// offline session, draining it and discarding it: what a scan of every
// session finds.
func TestLoadGauges(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	check := func(what string, wantQueued int, wantConns map[connKey]int) {
		t.Helper()
		var l Load
		var conns map[connKey]int
		var queued int
		defer func() {
			if t.Failed() {
				t.Logf("%s: Load %+v, scan %v %d", what, l, conns, queued)
			}
		}()
		eventually(t, what, func() bool {
			l = tb.Load()
			conns, queued = scanLoad(tb.Broker)
			return l.Queued == wantQueued && queued == wantQueued &&
				maps.Equal(loadMaps(l), wantConns) && maps.Equal(conns, wantConns)
		})
	}
	persistent := func(p *packet.Connect) {
		p.CleanStart = false
		p.Props.SessionExpiry = 300
		p.Props.Set(packet.PropSessionExpiry)
	}
	v5, v311 := connKey{"tcp://test", packet.V5}, connKey{"tcp://test", packet.V311}

	sub := tb.connect("load-sub", packet.V5, persistent)
	sub.subscribe(1, "load/#", 1)
	check("one v5 connection", 0, map[connKey]int{v5: 1})
	sub.send(&packet.Disconnect{})
	sub.close()
	check("the subscriber gone", 0, map[connKey]int{})
	pub := tb.connect("load-pub", packet.V311)
	for i := range 5 {
		pub.publish("load/x", fmt.Sprint(i), 1, false, uint16(i+1))
		pub.expect(packet.PUBACK)
	}
	check("five queued for the offline session", 5, map[connKey]int{v311: 1})

	sub = tb.connect("load-sub", packet.V5, func(p *packet.Connect) { persistent(p); p.CleanStart = false })
	for range 5 {
		m := sub.expect(packet.PUBLISH).(*packet.Publish)
		sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: m.PacketID})
	}
	check("the queue drained", 0, map[connKey]int{v5: 1, v311: 1})
	sub.send(&packet.Disconnect{})
	sub.close()
	check("the subscriber gone again", 0, map[connKey]int{v311: 1})
	for i := range 2 {
		pub.publish("load/x", fmt.Sprint(i), 1, false, uint16(i+10))
		pub.expect(packet.PUBACK)
	}
	check("two queued again", 2, map[connKey]int{v311: 1})
	sub = tb.connect("load-sub", packet.V5) // clean start discards the session
	check("the session discarded", 0, map[connKey]int{v5: 1, v311: 1})
	sub.send(&packet.Disconnect{})
	sub.close()
	pub.close()
	check("no connections", 0, map[connKey]int{})
}

// TestLoadTakesNoLock: Load answers while the broker lock and a session's
// lock are held: a scrape of /metrics neither scans the sessions nor waits
// on a lock that connects and deliveries take.
func TestLoadTakesNoLock(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	sub := tb.connect("load-sub", packet.V5, func(p *packet.Connect) {
		p.CleanStart = false
		p.Props.SessionExpiry = 300
		p.Props.Set(packet.PropSessionExpiry)
	})
	sub.subscribe(1, "load/#", 1)
	sub.close()
	eventually(t, "the subscriber gone", func() bool { return tb.Stats().ClientsConnected == 0 })
	pub := tb.connect("load-pub", packet.V5)
	pub.publish("load/x", "queued", 1, false, 1)
	pub.expect(packet.PUBACK)
	eventually(t, "one message queued", func() bool { _, q := scanLoad(tb.Broker); return q == 1 })

	done := make(chan Load, 1)
	tb.mu.Lock()
	s := tb.sessions["load-sub"]
	tb.mu.Unlock()
	s.mu.Lock() // session.mu before Broker.mu
	tb.mu.Lock()
	go func() { done <- tb.Load() }()
	var l Load
	select {
	case l = <-done:
	case <-time.After(waitTime):
		t.Errorf("Load waits on the broker lock or a session lock")
		tb.mu.Unlock()
		s.mu.Unlock()
		l = <-done
		s.mu.Lock()
		tb.mu.Lock()
	}
	tb.mu.Unlock()
	s.mu.Unlock()
	if l.Queued != 1 {
		t.Errorf("Load under the locks: queued %d, want 1", l.Queued)
	}

}
