package broker

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestIdleConnsHoldNoGoroutine: a connected, subscribed, idle plain TCP
// client has no goroutine in the broker; it still gets its messages.
func TestIdleConnsHoldNoGoroutine(t *testing.T) {
	if !canPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	const n = 200
	tb := startBroker(t, Options{AllowAnonymous: true})
	base := runtime.NumGoroutine()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = tb.connect("idle-"+strconv.Itoa(i), packet.V311)
		clients[i].subscribe(1, "idle/"+strconv.Itoa(i), 1)
	}
	eventually(t, "idle readers to park", func() bool { return runtime.NumGoroutine()-base < n/20 })
	pub := tb.connect("pub", packet.V5)
	for i := 0; i < n; i += 37 {
		pub.publish("idle/"+strconv.Itoa(i), "x", 0, false, 0)
		clients[i].expectPublish("idle/"+strconv.Itoa(i), "x")
	}
}

// TestKeepAliveExtendedByTraffic: a parked connection's deadline moves
// with every packet, so a client that pings more often than its keep-alive
// is never cut off, and one that stops is.
func TestKeepAliveExtendedByTraffic(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	c := tb.connect("ka", packet.V5, func(p *packet.Connect) { p.KeepAlive = 1 })
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); <-tick.C {
		c.send(&packet.Pingreq{})
		c.expect(packet.PINGRESP)
	}
	start := time.Now()
	c.expectDisconnect(0x8D)
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed %v after the last ping", d)
	}
}

// TestReaderBacklog: with the reader goroutines bounded to two, many
// clients that are ready at once are served from the backlog, and readers
// that block (here in an authenticator) do not stop the others.
func TestReaderBacklog(t *testing.T) {
	if !canPeek || runtime.GOOS != "linux" {
		t.Skip("connections are parked on Linux only")
	}
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	auth := authFunc(func(ctx context.Context, c *ClientInfo, p *packet.Connect) error {
		if p.Username == "slow" {
			<-release // past the CONNECT timeout too
		}
		return nil
	})
	tb := startBroker(t, Options{AllowAnonymous: true, Authenticator: auth})
	tb.mu.Lock()
	tb.maxReaders = 2
	tb.mu.Unlock()

	// Three readers block; the others must still connect and talk.
	slow := make([]*client, 3)
	for i := range slow {
		slow[i] = tb.dial(packet.V311)
	}
	eventually(t, "three parked connections", func() bool {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		parked := 0
		for c := range tb.conns {
			if c.rs.Load() == stParked {
				parked++
			}
		}
		return parked == len(slow)
	})
	for i := range slow {
		slow[i].send(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 60,
			ClientID: "slow-" + strconv.Itoa(i), Username: "slow", UsernameFlag: true})
	}
	const n = 40
	var wg sync.WaitGroup
	subs := make([]*client, n)
	for i := range subs {
		subs[i] = tb.dial(packet.V311)
	}
	errs := make(chan string, n)
	for i, c := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.send(&packet.Connect{Version: packet.V311, CleanStart: true, KeepAlive: 60, ClientID: "b-" + strconv.Itoa(i)})
			if p, err := c.read(waitTime); err != nil || p.Type() != packet.CONNACK {
				errs <- "connect " + strconv.Itoa(i) + ": " + errString(err)
				return
			}
			c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "all", QoS: 1}}})
			if p, err := c.read(waitTime); err != nil || p.Type() != packet.SUBACK {
				errs <- "subscribe " + strconv.Itoa(i) + ": " + errString(err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		return
	}
	pub := tb.connect("pub", packet.V311)
	pub.publish("all", "m", 1, false, 1)
	pub.expect(packet.PUBACK)
	for _, c := range subs {
		p := c.expectPublish("all", "m")
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
	}
	close(release)
	for _, c := range slow {
		c.expect(packet.CONNACK)
	}
}

type authFunc func(ctx context.Context, c *ClientInfo, p *packet.Connect) error

func (f authFunc) Authenticate(ctx context.Context, c *ClientInfo, p *packet.Connect) error {
	return f(ctx, c, p)
}

func errString(err error) string {
	if err == nil {
		return "wrong packet"
	}
	return err.Error()
}
