package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/sync/errgroup"
)

// TestFanInFanOutKeepsPerPublisherOrder proves that with many publishers and
// wildcard subscribers at once, every subscriber gets every QoS 1 message
// exactly once and each publisher's messages in order [MQTT-4.6.0-5].
func TestFanInFanOutKeepsPerPublisherOrder(t *testing.T) {
	t.Parallel()
	const pubs, perPub, subs = 10, 100, 5
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	var subscribers []*v5Client
	for i := range subs {
		c := connectV5(t, addr, v5Connect(fmt.Sprintf("sub%d", i), true, 0))
		c.subscribe(sub("fan/+/data", 1))
		subscribers = append(subscribers, c)
	}
	var wg sync.WaitGroup
	errc := make(chan error, pubs)
	for p := range pubs {
		c := connectV5(t, addr, v5Connect(fmt.Sprintf("pub%d", p), true, 0))
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("fan/p%d/data", p)
			for i := range perPub {
				if _, err := c.Publish(t.Context(), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
					errc <- fmt.Errorf("publisher %d message %d: %w", p, i, err)
					return
				}
			}
		}()
	}
	for si, s := range subscribers {
		next := map[string]int{}
		for _, m := range recvN(t, s.msgs, pubs*perPub, 30*time.Second) {
			if want := strconv.Itoa(next[m.Topic]); string(m.Payload) != want {
				t.Fatalf("subscriber %d: %s got %q, want %s (lost, duplicated or reordered)", si, m.Topic, m.Payload, want)
			}
			next[m.Topic]++
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for si, s := range subscribers {
		select {
		case m := <-s.msgs:
			t.Errorf("subscriber %d: extra message %v", si, m)
		default:
		}
	}
}

// TestSlowSubscriberDoesNotBlockPublishers proves a subscriber that never
// reads its socket does not stall the publisher or other subscribers: its
// QoS 0 copies are dropped and counted once its outbound queue is full,
// while a QoS 1 subscriber of the same stream receives every message.
func TestSlowSubscriberDoesNotBlockPublishers(t *testing.T) {
	t.Parallel()
	const n = 1000
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	stuck := dialRaw(t, addr, packet.V5)
	shrinkReadBuffer(t, stuck)
	stuck.mustConnect(rawConnect("stuck", true))
	stuck.subscribe(1, subID(0), rawSub("flood", 0))
	// From here on the stuck client reads nothing.

	fast := connectV5(t, addr, v5Connect("fast", true, 0))
	fast.subscribe(sub("flood", 1))
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	payload := strings.Repeat("x", 16<<10)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			p := &paho.Publish{Topic: "flood", QoS: 1, Payload: []byte(strconv.Itoa(i) + ":" + payload)}
			if _, err := pub.Publish(t.Context(), p); err != nil {
				errc <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
		}
		errc <- nil
	}()
	for i, m := range recvN(t, fast.msgs, n, 60*time.Second) {
		if !strings.HasPrefix(string(m.Payload), strconv.Itoa(i)+":") {
			t.Fatalf("fast subscriber message %d: %.10q...", i, m.Payload)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d x 16 KiB through with a stuck subscriber in %v", n, time.Since(start))
	st := srv.Broker().Stats()
	if st.Drops["outbound_full"] == 0 {
		t.Errorf("no outbound_full drops counted for a QoS 0 subscriber that never reads (16 MiB sent): %v", st.Drops)
	}
	t.Logf("drops %v", st.Drops)
}

// TestWriteTimeoutDisconnectsStuckSubscriber proves a subscriber whose
// socket accepts no bytes for WriteTimeout is disconnected, and its QoS 1
// messages wait in its persistent session for the next connection.
func TestWriteTimeoutDisconnectsStuckSubscriber(t *testing.T) {
	t.Parallel()
	srv := startBroker(t, func(c *config.Config) { c.MQTT.WriteTimeout = time.Second })
	addr := tcpAddr(t, srv)
	stuck, _ := persistentRaw(t, addr, "stuck", true)
	shrinkReadBuffer(t, stuck)
	stuck.subscribe(1, subID(0), rawSub("wt", 1))
	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	payload := bytes.Repeat([]byte("y"), 64<<10)
	// Enough to fill the socket buffers both ways; the stuck client reads nothing.
	ctxPub := func(i int) {
		if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "wt", QoS: 1, Payload: append([]byte(strconv.Itoa(i)+":"), payload...)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	for i := range 200 {
		ctxPub(i)
	}
	waitFor(t, 15*time.Second, "the stuck subscriber to be disconnected", func() bool {
		return srv.Broker().Stats().ClientsConnected == 1
	})
	// Resume on a raw connection: it reads as fast as the socket allows, so
	// the resumed delivery does not itself trip the 1 s write timeout.
	c, ca := persistentRaw(t, addr, "stuck", false)
	if !ca.SessionPresent {
		t.Fatalf("session lost after write-timeout disconnect")
	}
	seen := map[string]bool{}
	for len(seen) < 200 {
		p, _, err := c.readPacket(30 * time.Second)
		if err != nil {
			var missing []int
			for i := range 200 {
				if !seen[strconv.Itoa(i)] {
					missing = append(missing, i)
				}
			}
			t.Fatalf("after write-timeout disconnect, resumed session delivered %d of 200 QoS 1 messages (%v); missing %v; stats %+v",
				len(seen), err, missing, srv.Broker().Stats())
		}
		if pb, ok := p.(*packet.Publish); ok {
			seen[strings.SplitN(string(pb.Payload), ":", 2)[0]] = true
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: pb.PacketID})
		}
	}
}

// TestWriteTimeoutSparesSteadyReader proves WriteTimeout only disconnects a
// client whose socket takes nothing for that long (config.MQTT.WriteTimeout:
// "disconnects a client whose socket accepts no bytes, and that acknowledges
// none already sent, for this long"): a
// subscriber that keeps reading, at 1 MiB/s, a 6 MiB burst must stay
// connected and get all of it although the burst takes longer than the
// timeout to drain.
func TestWriteTimeoutSparesSteadyReader(t *testing.T) {
	t.Parallel()
	const n, size, rate = 96, 64 << 10, 1 << 20 // messages, bytes each, bytes/s read
	srv := startBroker(t, func(c *config.Config) { c.MQTT.WriteTimeout = 500 * time.Millisecond })
	addr := tcpAddr(t, srv)
	slow := dialRaw(t, addr, packet.V5)
	shrinkReadBuffer(t, slow)
	slow.mustConnect(rawConnect("slow", true))
	slow.subscribe(1, subID(0), rawSub("steady", 1))

	pub := connectV5(t, addr, v5Connect("pub", true, 0))
	payload := []byte(strings.Repeat("z", size))
	// The publisher runs while the subscriber is already reading.
	pubErr := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := pub.Publish(t.Context(), &paho.Publish{Topic: "steady", QoS: 1, Payload: payload}); err != nil {
				pubErr <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
		}
		pubErr <- nil
	}()
	// Read raw bytes at a steady 1 MiB/s; never pause for as long as the
	// write timeout. The PUBLISHes are not acknowledged: MaxInflight allows
	// them all.
	buf := make([]byte, 16<<10)
	start, got := time.Now(), 0
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for got < n*size {
		slow.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := slow.r.Read(buf)
		got += k
		if err != nil {
			select {
			case perr := <-pubErr:
				err = fmt.Errorf("%w (publisher: %v)", err, perr)
			default:
			}
			t.Fatalf("steady reader disconnected after %d of %d bytes in %v (read every 10ms at %d KiB/s): %v",
				got, n*size, time.Since(start).Round(time.Millisecond), rate>>10, err)
		}
		for time.Duration(got)*time.Second > time.Duration(rate)*time.Since(start) {
			<-tick.C // pacing the simulated slow link, not synchronisation
		}
	}
	t.Logf("steady reader got %d bytes in %v", got, time.Since(start))
	select {
	case err := <-pubErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("publisher not acknowledged within %v of the subscriber receiving everything", waitTimeout)
	}
}

// shrinkReadBuffer keeps the kernel from absorbing megabytes on behalf of a
// client that never reads, so the broker's own bounds are what is tested.
func shrinkReadBuffer(t *testing.T, c *rawConn) {
	t.Helper()
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		if err := tc.SetReadBuffer(16 << 10); err != nil {
			t.Logf("SetReadBuffer: %v", err)
		}
	}
}

// TestTakeoverStorm proves concurrent connections with one client id settle
// to exactly one live connection and one session, with the counters
// agreeing, and that the survivor still receives its subscription's
// messages.
func TestTakeoverStorm(t *testing.T) {
	t.Parallel()
	const rounds, parallel = 10, 8
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	for range rounds {
		var g errgroup.Group
		for range parallel {
			// Only dialling must succeed: a loser of the storm may be
			// closed at any point after that.
			g.Go(func() error {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return err
				}
				defer conn.Close()
				b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: "contested", KeepAlive: 30, Props: sessionExpiry(60)}).Encode(nil, packet.V5)
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				conn.Write(b)
				conn.Read(make([]byte, 64)) // CONNACK, or the close of a loser
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	waitClients(t, srv, 0) // every storm connection closed itself
	c := connectV5(t, addr, v5Connect("contested", false, 60))
	if !c.connack.SessionPresent {
		t.Errorf("session lost in the storm")
	}
	c.subscribe(sub("storm", 1))
	p := connectV5(t, addr, v5Connect("p", true, 0))
	p.publish("storm", 1, "after")
	if m := recv1(t, c.msgs); string(m.Payload) != "after" {
		t.Errorf("got %v", m)
	}
	st := srv.Broker().Stats()
	if st.ClientsConnected != 2 || st.Sessions != 2 {
		t.Errorf("after the storm: %d clients connected, %d sessions; want 2 and 2", st.ClientsConnected, st.Sessions)
	}
}

// TestSubscriptionChurnDuringTraffic proves that clients subscribing and
// unsubscribing overlapping filters while messages flow do not disturb a
// steady subscriber: it gets every QoS 1 message once, in order.
func TestSubscriptionChurnDuringTraffic(t *testing.T) {
	t.Parallel()
	const n = 1000
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	steady := connectV5(t, addr, v5Connect("steady", true, 0))
	steady.subscribe(sub("churn/a/b", 1))
	// A churner or the publisher that fails ends the test with its error
	// (cancelling ctx), rather than leaving the subscriber to time out.
	ctx, cancel := context.WithCancel(t.Context())
	g, ctx := errgroup.WithContext(ctx)
	stop := make(chan struct{})
	defer func() {
		cancel()
		g.Wait()
	}()
	for i := range 4 {
		c := connectV5(t, addr, v5Connect(fmt.Sprint("churner", i), true, 0))
		g.Go(func() error {
			filters := []string{"churn/#", "churn/+/b", "churn/a/+", "+/a/b", "$share/g/churn/a/b"}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return nil
				default:
				}
				f := filters[k%len(filters)]
				if sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: f, QoS: 1}}}); err != nil {
					return fmt.Errorf("churner %d: subscribe %s: %w (suback %+v)", i, f, err, sa)
				}
				if ua, err := c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{f}}); err != nil {
					return fmt.Errorf("churner %d: unsubscribe %s: %w (unsuback %+v)", i, f, err, ua)
				}
			}
		})
	}
	p := connectV5(t, addr, v5Connect("p", true, 0))
	g.Go(func() error {
		for i := range n {
			if pr, err := p.Publish(ctx, &paho.Publish{Topic: "churn/a/b", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
				return fmt.Errorf("publish %d: %w (response %+v)", i, err, pr)
			}
		}
		return nil
	})
	got := make([]msg, 0, n)
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case m := <-steady.msgs:
			got = append(got, m)
		case <-ctx.Done():
			t.Fatalf("steady subscriber got %d of %d messages: %v", len(got), n, g.Wait())
		case <-timeout:
			t.Fatalf("steady subscriber got %d of %d messages within 30s", len(got), n)
		}
	}
	checkOrder(t, "steady subscriber", got)
	close(stop)
	if err := g.Wait(); err != nil {
		t.Error(err)
	}
}

// TestConnectionCountersSettle proves the broker's connection and session
// counters return to zero after many concurrent clients leave, half with
// DISCONNECT and half by dropping the socket, and that MaxConnections
// accounting frees every slot.
func TestConnectionCountersSettle(t *testing.T) {
	t.Parallel()
	const n = 200
	srv := startBroker(t, func(c *config.Config) { c.MQTT.MaxConnections = n })
	addr := tcpAddr(t, srv)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(waitTimeout))
			b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, ClientID: fmt.Sprint("n", i), CleanStart: true, KeepAlive: 30}).Encode(nil, packet.V5)
			if _, err := conn.Write(b); err != nil {
				errc <- err
				return
			}
			ca, err := packet.ReadPacket(conn, packet.V5, 0)
			if err != nil {
				errc <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			if ca, ok := ca.(*packet.Connack); !ok || ca.ReasonCode != 0 {
				errc <- fmt.Errorf("client %d: %+v", i, ca)
				return
			}
			if i%2 == 0 {
				d, _ := (&packet.Disconnect{}).Encode(nil, packet.V5)
				conn.Write(d)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	waitClients(t, srv, 0)
	waitFor(t, waitTimeout, "every clean session to be released", func() bool { return srv.Broker().Stats().Sessions == 0 })
	for i := range n { // every slot is free again
		dialRaw(t, addr, packet.V5).mustConnect(rawConnect(fmt.Sprint("again", i), true))
	}
}
