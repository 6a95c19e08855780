package integration

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
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
	c := connectV5(t, addr, v5Connect("stuck", false, 300))
	if !c.connack.SessionPresent {
		t.Fatalf("session lost after write-timeout disconnect")
	}
	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < 200 {
		select {
		case m := <-c.msgs:
			seen[strings.SplitN(string(m.Payload), ":", 2)[0]] = true
		case <-deadline:
			t.Fatalf("after write-timeout disconnect, resumed session delivered %d of 200 QoS 1 messages", len(seen))
		}
	}
}
