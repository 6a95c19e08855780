package cluster

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
)

// routeTo is a's route to the node named name.
func (n *node) routeTo(t *testing.T, name string) *nodeRoute {
	t.Helper()
	var rt *nodeRoute
	eventually(t, n.r.node+" to know "+name, func() bool {
		n.r.mu.Lock()
		defer n.r.mu.Unlock()
		if p := n.r.peers[name]; p != nil && p.seq > 0 {
			rt = p.route
		}
		return rt != nil
	})
	return rt
}

// TestResyncKeepsNewSubscription: a SUBSCRIBE that lands while a
// resynchronisation walks the broker's filters stays announced: the other
// node keeps the filter, both for a filter new to the node and for one
// whose last subscriber left just before.
func TestResyncKeepsNewSubscription(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	a.routeTo(t, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old := dialPaho(t, b.addr, "old")
	subscribeSeen(t, old, a, "n1", "dup")
	if _, err := old.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"dup"}}); err != nil {
		t.Fatal(err)
	}
	late, again := dialPaho(t, b.addr, "late"), dialPaho(t, b.addr, "again")
	ran := false
	hook := func() {
		// Between the walk of the broker's filters and the announcement.
		ran = true
		for c, o := range map[*paho.Client]paho.SubscribeOptions{late: {Topic: "late/+", QoS: 0}, again: {Topic: "dup", QoS: 1}} {
			if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{o}}); err != nil {
				t.Error(err)
			}
		}
	}
	b.r.testResync.Store(&hook)
	b.r.resync()
	if !ran {
		t.Fatal("resync hook did not run")
	}
	b.r.mu.Lock()
	seq := b.r.localSeq
	b.r.mu.Unlock()
	eventually(t, "n0 to reach n1's interest sequence", func() bool {
		a.r.mu.Lock()
		defer a.r.mu.Unlock()
		p := a.r.peers["n1"]
		return p != nil && p.seq >= seq && !p.syncing
	})
	got := a.peerFilters("n1")
	for _, f := range []string{"late/+", "dup"} {
		if _, ok := got[f]; !ok {
			t.Errorf("n0 lost n1's filter %q subscribed during a resync: has %v", f, got)
		}
	}
}

func (r *Router) setTestPublish(fn func(node string, batch []byte) error) { r.testPublish.Store(&fn) }

type ackRec chan error

func (c ackRec) Done(err error) { c <- err }

func (c ackRec) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: never completed", what)
		return nil
	}
}

// TestFlushFailsOnlyUnsentBatches: when one NATS message of a multi-batch
// flush fails, only the messages in it fail; those in the batches before
// and after it went out and succeed when the node accepts them (no
// duplicate from a publisher retransmitting a delivered message). (A
// link keeps what it could not send: TestLinkDownWaits.)
func TestFlushFailsOnlyUnsentBatches(t *testing.T) {
	ns := startNodesWith(t, 2, func(c *config.Cluster) { c.LinkListen = "off" })
	a := ns[0]
	rt := a.routeTo(t, "n1")
	entered, gate := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	a.r.setTestPublish(func(node string, batch []byte) error {
		switch calls.Add(1) {
		case 1:
			close(entered)
			<-gate // the gate message: the next three gather meanwhile
		case 3:
			return errors.New("test: this batch was not sent")
		}
		return a.r.nc.Publish(a.r.prefix+"msg."+node, batch)
	})
	rt.Deliver(&broker.Message{Topic: "gate"}, 0)
	<-entered
	big := strings.Repeat("x", 700<<10) // one per NATS message
	recs := []ackRec{make(ackRec, 1), make(ackRec, 1), make(ackRec, 1)}
	for i, rec := range recs {
		rt.DeliverAck(&broker.Message{Topic: "big/" + string(rune('a'+i)), Payload: []byte(big), QoS: 1}, 1, rec)
	}
	close(gate)
	for i, want := range []bool{true, false, true} {
		err := recs[i].wait(t, "message "+string(rune('a'+i)))
		if ok := err == nil; ok != want {
			t.Errorf("message %d (batch %d of the flush): err %#v, want success %v", i, i+1, err, want)
		}
		var c packet.Code
		if err != nil && (!errors.As(err, &c) || c.Value != packet.ErrUnspecified.Value) {
			t.Errorf("message %d failed with %v, want 0x80", i, err)
		}
	}
	if st := a.r.Stats(); len(st.Peers) != 1 || st.Peers[0].Waiting != 0 {
		t.Errorf("peers %+v, want n1 with nothing waiting", st.Peers)
	}
}

// TestNodeGoneFailsWaits: a QoS 1 publish waiting for a node that goes
// silent (its heartbeats stop: dead or cut off, which the publishing node
// cannot tell apart) fails with PUBACK 0x80 once the node is seen gone,
// before ack_timeout; it is never acknowledged as delivered.
func TestNodeGoneFailsWaits(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	sub := dialPaho(t, b.addr, "sub")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subscribeSeen(t, sub, a, "n1", "q")
	sent := make(chan struct{}, 16)
	a.r.setTestPublish(func(string, []byte) error { sent <- struct{}{}; return nil }) // n1 never gets it
	pub := dialPaho(t, a.addr, "pub")
	res := make(chan *paho.PublishResponse, 1)
	go func() {
		pr, _ := pub.Publish(ctx, &paho.Publish{Topic: "q", QoS: 1, Payload: []byte("x")})
		res <- pr
	}()
	select {
	case <-sent:
	case <-time.After(20 * time.Second):
		t.Fatal("the message was never forwarded to n1")
	}
	start := time.Now()
	b.r.Close()
	b.f.Close()
	select {
	case pr := <-res:
		if pr == nil || pr.ReasonCode != packet.ErrUnspecified.Value {
			t.Fatalf("publish waiting for a node that went silent: %+v, want PUBACK 0x80", pr)
		}
		if d := time.Since(start); d >= 4*time.Second {
			t.Errorf("failed after %v: at ack_timeout (5s), not when the node was seen gone (node_timeout 1s)", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no PUBACK")
	}
}

// TestSlowNodeBounded: a node whose route blocks (NATS does not take what
// is sent to it) does not stall forwarding to the other nodes; what waits
// for it stays under cluster.max_pending_bytes (QoS 0 over it is dropped
// and counted, QoS 1 over it fails at once with 0x97), and QoS 1 publishes
// it did not accept fail after ack_timeout.
func TestSlowNodeBounded(t *testing.T) {
	const limit = 256 << 10
	// n2's subscriber also takes slow/#, which the flood goes to: only
	// the route to n2 fills.
	ns := startNodesWith(t, 3, func(c *config.Cluster) { c.MaxPending, c.AckTimeout = limit, 3*time.Second })
	a, b, c := ns[0], ns[1], ns[2]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	healthy := make(chan string, 4096)
	conn, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	hs := paho.NewClient(paho.ClientConfig{ClientID: "healthy", Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { healthy <- string(pr.Packet.Payload); return true, nil }}})
	if _, err := hs.Connect(ctx, &paho.Connect{ClientID: "healthy", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Disconnect(&paho.Disconnect{}); conn.Close() })
	slow := dialPaho(t, c.addr, "slow")
	if _, err := hs.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "s/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "s/#", QoS: 1}, {Topic: "slow/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n0 to learn the subscriptions", func() bool {
		_, ok1 := a.peerFilters("n1")["s/#"]
		_, ok2 := a.peerFilters("n2")["slow/#"]
		return ok1 && ok2
	})
	slowRoute := a.routeTo(t, "n2")
	blocked, unblock := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(func() { close(unblock) }) // before the nodes close
	a.r.setTestPublish(func(node string, batch []byte) error {
		if node == "n2" {
			select {
			case blocked <- struct{}{}:
			default:
			}
			<-unblock
			return errors.New("test: route blocked")
		}
		return a.r.nc.Publish(a.r.prefix+"msg."+node, batch)
	})
	pub := dialPaho(t, a.addr, "pub")
	first := make(chan *paho.PublishResponse, 1)
	start := time.Now()
	// Its own connection: PUBACKs leave in order, and this one waits.
	firstPub := dialPaho(t, a.addr, "first")
	go func() {
		pr, _ := firstPub.Publish(ctx, &paho.Publish{Topic: "s/first", QoS: 1, Payload: []byte("first")})
		first <- pr
	}()
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("the route to n2 never blocked")
	}
	payload := []byte(strings.Repeat("p", 1024))
	for range 1000 {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "slow/flood", QoS: 0, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	for range n {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: "s/h", QoS: 0, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	endAt := time.Now()
	// Bigger than a flood message: it cannot fit in what the flood left.
	pr, err := pub.Publish(ctx, &paho.Publish{Topic: "s/end", QoS: 1, Payload: []byte("end" + strings.Repeat("e", 2048))})
	if pr == nil || pr.ReasonCode != packet.ErrUnspecified.Value {
		t.Errorf("QoS 1 publish over the slow node's limit: %+v %v, want PUBACK 0x80", pr, err)
	}
	if d := time.Since(endAt); d >= 2*time.Second {
		t.Errorf("QoS 1 publish over the slow node's limit failed after %v, not at once", d)
	}
	got := 0
	for done := false; !done; {
		select {
		case p := <-healthy:
			switch {
			case strings.HasPrefix(p, "end"):
				done = true
			case len(p) == len(payload):
				got++
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("the healthy node stalled: %d of %d messages, no end marker", got, n)
		}
	}
	if got != n {
		t.Errorf("the healthy node got %d of %d", got, n)
	}
	if p := slowRoute.pendingBytes(); p > limit {
		t.Errorf("%d bytes pending for the slow node, over cluster.max_pending_bytes %d", p, limit)
	}
	if d := slowRoute.dropped.Load(); d == 0 {
		t.Error("no QoS 0 message counted as dropped for the slow node")
	} else if st := a.b.Stats().Drops["route_full"]; st < d {
		t.Errorf("broker drops route_full %d, the route dropped %d", st, d)
	}
	select {
	case pr := <-first:
		if pr == nil || pr.ReasonCode != packet.ErrUnspecified.Value {
			t.Errorf("QoS 1 publish the slow node never accepted: %+v, want PUBACK 0x80", pr)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("failed after %v, before ack_timeout (3s)", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the publish waiting for the slow node never completed")
	}
}

// TestReceiverBacklogBounded: a node that routes forwarded messages slower
// than another forwards them through NATS holds at most
// cluster.max_pending_bytes of them; past it the newest are dropped, and
// once it catches up a later message arrives. (On a link the receiver
// reads no faster than it routes: TestLinkBacklogBounded.)
func TestReceiverBacklogBounded(t *testing.T) {
	const limit = 256 << 10
	ns := startNodesWith(t, 2, func(c *config.Cluster) { c.MaxPending, c.LinkListen = limit, "off" })
	a, b := ns[0], ns[1]
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "flood/#", 0)
	eventually(t, "n0 to learn flood/#", func() bool { _, ok := a.peerFilters("n1")["flood/#"]; return ok })
	var msgSub *nats.Subscription
	for _, s := range b.r.subs {
		if s.Subject == b.r.prefix+"msg.n1" {
			msgSub = s
		}
	}
	blocked, unblock := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(release)
	hook := func() {
		select {
		case blocked <- struct{}{}:
		default:
		}
		<-unblock
	}
	b.r.testInject.Store(&hook)
	pub := dialRaw(t, a.addr, "pub")
	const n = 10000 // about 850 KiB of frames
	pub.publishN(t, "flood/x", 0, n, newWindow(n))
	select {
	case <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("nothing reached n1")
	}
	rt := a.routeTo(t, "n1")
	// n0 may drop some itself (its own max_pending_bytes) while the
	// NATS connection backs up behind the blocked n1.
	eventually(t, "n0 to forward the flood", func() bool {
		return a.r.forwarded.Load()+rt.dropped.Load() >= n && rt.pendingBytes() == 0
	})
	if err := a.r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1 to drop or hold over the limit", func() bool {
		_, bytes, _ := msgSub.Pending()
		dropped, _ := msgSub.Dropped()
		return dropped > 0 || bytes > limit
	})
	if _, bytes, _ := msgSub.Pending(); bytes > limit {
		t.Errorf("n1 holds %d bytes of forwarded messages, over max_pending_bytes %d", bytes, limit)
	}
	if d := b.r.Stats().ReceivedDropped; d == 0 {
		t.Error("n1 dropped forwarded messages and did not count them")
	}
	b.r.testInject.Store(nil)
	release()
	eventually(t, "n1 to route what it holds", func() bool { m, _, _ := msgSub.Pending(); return m == 0 })
	floodDropped(t, pub, sub, n)
}

// floodDropped publishes a marker after a flood of n messages on
// flood/x and checks that sub got fewer than n of them before it.
func floodDropped(t *testing.T, pub, sub *rawClient, n int) {
	t.Helper()
	pub.publishN(t, "flood/marker", 0, 1, newWindow(1))
	sub.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := 0
	for {
		topic, err := sub.nextTopic()
		if err != nil {
			t.Fatalf("after %d messages: %v", got, err)
		}
		if topic == "flood/marker" {
			break
		}
		got++
	}
	if got >= n {
		t.Errorf("%d of %d messages delivered: none dropped", got, n)
	}
}

// TestConcurrentForwardsAcknowledged: QoS 1 publishers on one node whose
// messages go to another are each acknowledged for their own message:
// concurrent sends to one node never give two frames the same sequence
// (one would never be acknowledged, and its publisher would wait for
// ack_timeout).
func TestConcurrentForwardsAcknowledged(t *testing.T) {
	ns := startNodesWith(t, 2, func(c *config.Cluster) { c.AckTimeout = time.Minute })
	a, b := ns[0], ns[1]
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "c/#", 1)
	go sub.ackAll()
	eventually(t, "n0 to learn c/#", func() bool { _, ok := a.peerFilters("n1")["c/#"]; return ok })
	const pubs, each = 10, 3000
	done := make(chan error, pubs)
	for i := range pubs {
		pc := dialRaw(t, a.addr, "pub"+strconv.Itoa(i))
		go func() {
			// At most 32 in flight, as `culex bench` does; a PUBACK that
			// waits for ack_timeout fails the read deadline.
			pc.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
			done <- pc.publishAcked("c/"+strconv.Itoa(i), each)
		}()
	}
	for range pubs {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	rt := a.routeTo(t, "n1")
	rt.mu.Lock()
	waiting := rt.waiting
	rt.mu.Unlock()
	if waiting != 0 {
		t.Errorf("%d forwarded messages still wait for their acknowledgement", waiting)
	}
}

// TestTimeoutByTicks: ack_timeout fails a wait at the first heartbeat
// tick that is ack_timeout after a tick that came before the wait, never
// earlier (the route reads no clock per message: each tick marks the
// sequences given so far).
func TestTimeoutByTicks(t *testing.T) {
	const s = int64(time.Second)
	const ackTO = 3 * s
	n := &nodeRoute{first: 1}
	var first, second = make(ackRec, 1), make(ackRec, 1)
	tick := func(now int64) { n.timeout(now, now-ackTO) }
	tick(0)
	n.wait(waiter{ack: first}) // between the ticks at 0 and 1 s
	tick(1 * s)
	n.wait(waiter{ack: second}) // between 1 and 2 s
	for now := 2 * s; now <= ackTO; now += s {
		tick(now)
	}
	if len(first) != 0 || len(second) != 0 {
		t.Fatal("a wait failed before ack_timeout passed since a tick after it")
	}
	tick(4 * s) // ack_timeout after the tick at 1 s: the first wait is older
	if err := <-first; !errors.Is(err, ErrRemoteTimeout) {
		t.Fatalf("first wait: %v, want ErrRemoteTimeout", err)
	}
	if len(second) != 0 {
		t.Fatal("the second wait failed at 4 s; it may be 2 s old")
	}
	tick(5 * s)
	if err := <-second; !errors.Is(err, ErrRemoteTimeout) {
		t.Fatalf("second wait: %v, want ErrRemoteTimeout", err)
	}
	if n.waiting != 0 || len(n.marks) > int(ackTO/s)+1 {
		t.Fatalf("waiting %d, marks %d", n.waiting, len(n.marks))
	}
}

// TestGatherYieldsWhileFramesCome: a flusher yields once when no frame
// comes meanwhile (idle: the batch leaves at once), again while frames
// keep coming, and at most maxYields times.
func TestGatherYieldsWhileFramesCome(t *testing.T) {
	for _, c := range []struct {
		name   string
		frames int // yields during which a publisher appends a frame
		want   int
	}{
		{"idle", 0, 1},
		{"two yields with frames", 2, 3},
		{"frames all the time", 1 << 20, maxYields},
	} {
		var r Router
		n := 0
		r.gatherWith(func() {
			n++
			if n <= c.frames {
				r.forwarded.Add(1)
			}
		})
		if n != c.want {
			t.Errorf("%s: %d yields, want %d", c.name, n, c.want)
		}
	}
}

// TestReleasedRouteCountsQoS0: QoS 0 messages still held for a node when
// it is seen gone are counted dropped (route_down), not lost unseen.
func TestReleasedRouteCountsQoS0(t *testing.T) {
	ns := startNodes(t, 2)
	a, b := ns[0], ns[1]
	sub := dialRaw(t, b.addr, "sub")
	sub.subscribe(t, "gone/#", 0)
	eventually(t, "n0 to learn gone/#", func() bool { _, ok := a.peerFilters("n1")["gone/#"]; return ok })
	rt := a.routeTo(t, "n1")
	entered := make(chan struct{}, 1)
	unblock := make(chan struct{})
	a.r.setTestPublish(func(string, []byte) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-unblock
		return nil
	})
	defer close(unblock)
	pub := dialRaw(t, a.addr, "pub")
	pub.publishN(t, "gone/first", 0, 1, newWindow(1))
	select {
	case <-entered: // the flusher is stuck with the first batch
	case <-time.After(15 * time.Second):
		t.Fatal("the first message was never sent")
	}
	const n = 10
	pub.publishN(t, "gone/x", 0, n, newWindow(n))
	eventually(t, "the route to hold them", func() bool { return rt.pendingBytes() > 0 && a.r.forwarded.Load() >= n+1 })
	before := a.r.b.Stats().Drops["route_down"]
	b.r.Close()
	b.f.Close()
	eventually(t, "n1 seen gone, its held messages counted", func() bool {
		return a.r.b.Stats().Drops["route_down"]-before == n
	})
	if d := rt.dropped.Load(); d != n {
		t.Errorf("route dropped %d, want %d", d, n)
	}
}
