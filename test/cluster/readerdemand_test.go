package cluster_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestReaderStartsForFirstSubscriber: a node reads the log only while one
// of its persistent sessions subscribes (docs/cluster.md, "Reading the
// log"). While QoS 1 messages flow into the log (a persistent subscriber
// on node 0), a persistent session subscribes on node 1, whose reader has
// not run: it gets every message published after its SUBACK, once its
// node's reader started; node 2, without one, never reads (fails when a
// SUBSCRIBE does not hold the reader: nothing arrives).
func TestReaderStartsForFirstSubscriber(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: adminExtra})
	admins := make([]string, 3)
	for i, n := range c.Nodes {
		admins[i] = adminURL(t, n)
	}
	starts := func(i int) float64 {
		return metric(t, admins[i], `culex_cluster_sessions_reader_runs_total{event="start"}`)
	}
	const topic = "demand/t"
	keep, ack := dialRaw(t, c.Nodes[0].MQTT(), "demand-keep", packet.V5, 1000)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	if code, _ := keep.subscribe(1, topic, 1); code != 1 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	go func() { // node 0's subscriber reads along (unchecked)
		for {
			p, err := keep.read(time.Minute)
			if err != nil {
				return
			}
			if pub, ok := p.(*packet.Publish); ok {
				keep.nc.Write(mustEncode(&packet.Ack{Kind: packet.PUBACK, PacketID: pub.PacketID}, packet.V5))
			}
		}
	}()

	pub := dialV5(t, c.Nodes[0].MQTT(), "demand-pub")
	var cur atomic.Int64 // the message being published
	stopAt := atomic.Int64{}
	stopAt.Store(1 << 40)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := int64(0); i < stopAt.Load(); i++ {
			cur.Store(i)
			if _, err := pub.pub(topic, 1, strconv.FormatInt(i, 10)); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	})
	defer func() { stopAt.Store(0); wg.Wait() }()
	eventually(t, "messages flowing", func() bool { return cur.Load() >= 100 })
	if n := starts(1); n != 0 {
		t.Fatalf("node 1's reader started %v times before a session of it subscribed", n)
	}

	sub, ack := dialRaw(t, c.Nodes[1].MQTT(), "demand-sub", packet.V5, 1000)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	code, before := sub.subscribe(1, topic, 1)
	from := cur.Load() + 1 // published after the SUBACK
	if code != 1 {
		t.Fatalf("SUBACK 0x%02x", code)
	}
	const n = 300
	stopAt.Store(from + n)
	wg.Wait()
	got := map[int64]bool{}
	for _, p := range before {
		i, _ := strconv.ParseInt(string(p.Payload), 10, 64)
		got[i] = true
		sub.ack(p)
	}
	deadline := time.Now().Add(waitTimeout)
	missing := func() []int64 {
		var m []int64
		for i := from; i < from+n; i++ {
			if !got[i] {
				m = append(m, i)
			}
		}
		return m
	}
	for len(missing()) > 0 && time.Now().Before(deadline) {
		p, err := sub.read(time.Until(deadline))
		if err != nil {
			break
		}
		if p, ok := p.(*packet.Publish); ok {
			i, _ := strconv.ParseInt(string(p.Payload), 10, 64)
			got[i] = true
			sub.ack(p)
		}
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("%d of the %d messages published after the SUBACK (from %d) never came: %v", len(m), n, from, head(m, 20))
	}
	if s1, s2 := starts(1), starts(2); s1 != 1 || s2 != 0 {
		t.Errorf("the readers started %v times on node 1, %v on node 2; want 1 and 0", s1, s2)
	}
}

func mustEncode(p packet.Packet, v packet.Version) []byte {
	b, err := p.Encode(nil, v)
	if err != nil {
		panic(err)
	}
	return b
}

func head(m []int64, n int) string {
	if len(m) > n {
		return fmt.Sprint(m[:n], "...")
	}
	return fmt.Sprint(m)
}
