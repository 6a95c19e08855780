package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

func TestConn(t *testing.T) { forBrokers(t, testConn) }

func testConn(t *testing.T, url brokerURLs) {
	cfg := testConfig(t, "conn", url.tcp)
	cfg.Clients, cfg.Duration = 200, 100*time.Millisecond
	cfg.Target.locals, _ = ParseLocalAddrs("127.0.0.2-127.0.0.3")
	s := runT(t, cfg)
	if s.Clients.Connected != 200 || s.Clients.Failed != 0 || len(s.Errors) != 0 {
		t.Errorf("clients %+v errors %v", s.Clients, s.Errors)
	}
}

func TestRun(t *testing.T) { forBrokers(t, testRun) }

func testRun(t *testing.T, url brokerURLs) {
	for _, v := range []packet.Version{packet.V31, packet.V311, packet.V5} {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("v=%s/qos=%d", v, qos), func(t *testing.T) {
				cfg := testConfig(t, "run", url.tcp)
				cfg.Pubs, cfg.Subs, cfg.Limit, cfg.QoS, cfg.SubQoS, cfg.Version = 3, 2, 600, qos, qos, v
				cfg.Rate = 20000
				s := runT(t, cfg)
				if s.Published != 600 || s.Expected != 1200 || s.Received != 1200 {
					t.Errorf("published %d expected %d received %d", s.Published, s.Expected, s.Received)
				}
				if s.Lost != 0 || s.Duplicates != 0 || s.Streams != 6 || len(s.Errors) != 0 {
					t.Errorf("lost %d dups %d streams %d errors %v", s.Lost, s.Duplicates, s.Streams, s.Errors)
				}
				if qos > 0 && s.Acked != 600 {
					t.Errorf("acked %d", s.Acked)
				}
				if s.Latency.Count != 1200 || s.Latency.P50US <= 0 {
					t.Errorf("latency %+v", s.Latency)
				}
			})
		}
	}
}

// TestPubSub runs `sub` and `pub` as separate runs, like two processes
// would: the subscribers are ready before publishing starts.
func TestPubSub(t *testing.T) { forBrokers(t, testPubSub) }

func testPubSub(t *testing.T, url brokerURLs) {
	sub := testConfig(t, "sub", url.tcp)
	sub.Clients, sub.Limit, sub.QoS, sub.SubQoS = 2, 1000, 1, 1
	ready := make(chan struct{})
	sub.onReady = func() { close(ready) }
	done := make(chan *Summary, 1)
	go func() {
		s, err := Run(context.Background(), sub, nil)
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("subscribers not ready")
	}
	pub := testConfig(t, "pub", url.tcp)
	pub.Clients, pub.Limit, pub.QoS = 5, 500, 1
	ps := runT(t, pub)
	if ps.Published != 500 || ps.Acked != 500 || len(ps.Errors) != 0 {
		t.Errorf("pub: published %d acked %d errors %v", ps.Published, ps.Acked, ps.Errors)
	}
	var ss *Summary
	select {
	case ss = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("sub did not finish")
	}
	if ss == nil {
		return
	}
	if ss.Received != 1000 || ss.Clients.Subscribed != 2 || ss.Streams != 10 || ss.Lost != 0 || ss.Duplicates != 0 {
		t.Errorf("sub: received %d subscribed %d streams %d lost %d dups %d",
			ss.Received, ss.Clients.Subscribed, ss.Streams, ss.Lost, ss.Duplicates)
	}
}

func TestRunWebSocket(t *testing.T) { forBrokers(t, testRunWebSocket) }

func testRunWebSocket(t *testing.T, url brokerURLs) {
	cfg := testConfig(t, "run", url.ws)
	cfg.Pubs, cfg.Subs, cfg.Limit, cfg.QoS, cfg.SubQoS = 2, 2, 400, 1, 1
	cfg.Size = 1000 // frames over 125 bytes use the 16-bit length
	s := runT(t, cfg)
	if s.Received != 800 || s.Lost != 0 || len(s.Errors) != 0 {
		t.Errorf("received %d lost %d errors %v", s.Received, s.Lost, s.Errors)
	}
}

func TestConnackRefused(t *testing.T) {
	port := startMosquitto(t, "allow_anonymous false\n")
	for _, c := range []struct {
		v    packet.Version
		want string
	}{
		{packet.V311, "connack: 0x05 not authorized"},
		{packet.V5, "connack: 0x87 not authorized"},
	} {
		cfg := testConfig(t, "conn", fmt.Sprintf("tcp://127.0.0.1:%d", port))
		cfg.Clients, cfg.Duration, cfg.Version = 3, time.Millisecond, c.v
		s := runT(t, cfg)
		if s.Clients.Connected != 0 || s.Clients.Failed != 3 || s.Errors[c.want] != 3 {
			t.Errorf("%s: clients %+v errors %v, want 3 x %q", c.v, s.Clients, s.Errors, c.want)
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	cfg := testConfig(t, "conn", fmt.Sprintf("tcp://127.0.0.1:%d", brokertest.FreePort(t)))
	cfg.Clients, cfg.Duration = 2, time.Millisecond
	s := runT(t, cfg)
	if s.Clients.Failed != 2 || s.Errors["connect: connection refused"] != 2 {
		t.Errorf("clients %+v errors %v", s.Clients, s.Errors)
	}
}
