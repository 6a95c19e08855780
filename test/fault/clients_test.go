package fault_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"
	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Timeouts of the clients. A publish may wait for cluster.ack_timeout
// (10 s in clustertest) and then some.
const (
	dialTimeout    = 2 * time.Second
	connectTimeout = 5 * time.Second
	publishTimeout = 20 * time.Second
	retryInterval  = 200 * time.Millisecond // between two failed connection attempts
	keepAlive      = 3                      // seconds: a hung link is noticed within 1.5 of these
	sessionExpiry  = 3600                   // seconds
)

// lb is what a load balancer does for a client: it tries the nodes in
// turn, from a start, reading each node's current address (a restarted
// node listens on a new port).
type lb struct {
	nodes []*clustertest.Node
	next  int
}

func newLB(home *clustertest.Node, all []*clustertest.Node) *lb {
	l := &lb{nodes: []*clustertest.Node{home}}
	for _, n := range all {
		if n != home {
			l.nodes = append(l.nodes, n)
		}
	}
	return l
}

func (l *lb) pick() *clustertest.Node {
	n := l.nodes[l.next%len(l.nodes)]
	l.next++
	return n
}

// pace waits retryInterval, or until ctx ends (false).
func pace(ctx context.Context) bool {
	t := time.NewTimer(retryInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pubConn is one publisher connection: paho.golang (v5) or
// paho.mqtt.golang (3.1.1).
type pubConn interface {
	// publish returns nil once acknowledged with success; broken says
	// the connection is unusable after an error.
	publish(ctx context.Context, topic, payload string, qos byte) (err error, broken bool)
	close()
}

// publisher sends numbered messages at one QoS on its own topic at a
// steady rate, recording what was acknowledged. A failed publish is not
// sent again: the checker counts it as failed, and only acknowledged ids
// must arrive (a second copy of a failed QoS 2 publish would be a new
// message to the broker, so resending would blur the QoS 2 count).
type publisher struct {
	name  string
	v5    bool
	qos   byte
	topic string
	lb    *lb
	chk   *checker
	every time.Duration
	seq   int
}

func (p *publisher) dial(ctx context.Context) (pubConn, error) {
	n := p.lb.pick()
	id := fmt.Sprintf("%s-%d", p.name, p.lb.next)
	if p.v5 {
		return dialPub5(ctx, n.MQTT(), id)
	}
	return dialPub3(n.MQTT(), id)
}

// run publishes until ctx ends.
func (p *publisher) run(ctx context.Context) {
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	var c pubConn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = p.dial(ctx); err != nil {
				c = nil
				pace(ctx)
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.seq++
		id := msgID(p.qos, p.name, p.seq)
		p.chk.attempt(p.qos)
		err, broken := c.publish(ctx, p.topic, id, p.qos)
		if err != nil {
			p.chk.fail(p.qos)
			if broken {
				c.close()
				c = nil
			}
			continue
		}
		p.chk.ack(id, p.qos)
	}
}

type pub5 struct {
	c    *paho.Client
	conn net.Conn
}

func dialPub5(ctx context.Context, addr, id string) (*pub5, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn, PacketTimeout: publishTimeout})
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: keepAlive}); err != nil {
		conn.Close()
		return nil, err
	}
	return &pub5{c: c, conn: conn}, nil
}

func (p *pub5) publish(ctx context.Context, topic, payload string, qos byte) (error, bool) {
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	r, err := p.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if err == nil && r != nil && r.ReasonCode >= 0x80 {
		return fmt.Errorf("reason 0x%02x", r.ReasonCode), false
	}
	if err != nil {
		select {
		case <-p.c.Done():
			return err, true
		default:
			return err, errors.Is(err, context.DeadlineExceeded)
		}
	}
	return nil, false
}

func (p *pub5) close() {
	p.c.Disconnect(&paho.Disconnect{})
	p.conn.Close()
}

type pub3 struct{ c mqtt.Client }

func opts3(addr, id string, clean bool) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(connectTimeout).SetKeepAlive(keepAlive * time.Second).SetPingTimeout(keepAlive * time.Second).
		SetWriteTimeout(connectTimeout).SetOrderMatters(false)
}

func dialPub3(addr, id string) (*pub3, error) {
	c := mqtt.NewClient(opts3(addr, id, true))
	tok := c.Connect()
	if !tok.WaitTimeout(connectTimeout + time.Second) {
		c.Disconnect(0)
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return &pub3{c: c}, nil
}

func (p *pub3) publish(ctx context.Context, topic, payload string, qos byte) (error, bool) {
	tok := p.c.Publish(topic, qos, false, payload)
	t := time.NewTimer(publishTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-t.C:
		return errors.New("no acknowledgement"), true // 3.1.1: a refusal is silence
	case <-ctx.Done():
		return ctx.Err(), true
	}
	if err := tok.Error(); err != nil {
		return err, true
	}
	return nil, false
}

func (p *pub3) close() { p.c.Disconnect(0) }

// subscriber holds a session (persistent unless clean) on its home node
// and, when its connection ends, reconnects through its lb: a new
// connection that finds no session subscribes again (as a client would)
// and is counted. pause takes it away for a while. move makes it leave its node for another at once, the
// way a client-id takeover does.
type subscriber struct {
	id      string
	v5      bool
	clean   bool
	filters map[string]byte
	lb      *lb
	rec     *record
	move    chan *clustertest.Node
	// pause makes it disconnect (its session kept) until the channel
	// it is sent is closed; then it reconnects through its lb.
	pause   chan chan struct{}
	offline bool         // the scenario pauses it across each fault
	state   *state.State // v5: the client's side of the session, kept across connections

	mu   sync.Mutex
	live bool
	cur  *clustertest.Node
}

func (s *subscriber) setLive(n *clustertest.Node) {
	s.mu.Lock()
	s.live, s.cur = n != nil, n
	s.mu.Unlock()
}

// at is the node the subscriber is connected to (nil: none).
func (s *subscriber) at() *clustertest.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *subscriber) isLive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live
}

// run keeps the subscriber connected until ctx ends; ready is closed
// after its first SUBACK.
func (s *subscriber) run(ctx context.Context, ready chan<- struct{}) {
	first := true
	var to *clustertest.Node
	for ctx.Err() == nil {
		n := to
		if n == nil {
			n = s.lb.pick()
		}
		to = nil
		var moved *clustertest.Node
		var err error
		if s.v5 {
			moved, err = s.session5(ctx, n, first, ready)
		} else {
			moved, err = s.session3(ctx, n, first, ready)
		}
		if err == nil {
			first = false
		} else if !pace(ctx) {
			return
		}
		to = moved
	}
}

// session5 runs one v5 connection to n until it ends; it returns the
// node to move to, if asked to.
func (s *subscriber) session5(ctx context.Context, n *clustertest.Node, first bool, ready chan<- struct{}) (*clustertest.Node, error) {
	conn, err := net.DialTimeout("tcp", n.MQTT(), dialTimeout)
	if err != nil {
		return nil, err
	}
	st := s.state
	if s.clean {
		st = state.NewInMemory()
	}
	c := paho.NewClient(paho.ClientConfig{
		ClientID: s.id, Conn: conn, Session: st, PacketTimeout: connectTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.rec.received(string(pr.Packet.Payload))
			return true, nil
		}},
	})
	expiry := uint32(sessionExpiry)
	if s.clean {
		expiry = 0
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	ca, err := c.Connect(cctx, &paho.Connect{ClientID: s.id, CleanStart: s.clean, KeepAlive: keepAlive,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if first || !ca.SessionPresent {
		sub := &paho.Subscribe{}
		for f, q := range s.filters {
			sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: q})
		}
		sa, err := c.Subscribe(cctx, sub)
		if err == nil {
			for _, r := range sa.Reasons {
				if r >= 0x80 {
					err = fmt.Errorf("SUBACK 0x%02x", r)
				}
			}
		}
		if err != nil {
			c.Disconnect(&paho.Disconnect{})
			conn.Close()
			<-c.Done()
			return nil, err
		}
	}
	s.rec.connUsable(ca.SessionPresent, first)
	s.setLive(n)
	if first {
		close(ready)
	}
	var to *clustertest.Node
	select {
	case <-c.Done():
	case to = <-s.move:
		conn.Close() // abruptly, as a client that lost its route does
		<-c.Done()
	case back := <-s.pause:
		c.Disconnect(&paho.Disconnect{}) // the session stays (its expiry)
		conn.Close()
		<-c.Done()
		s.away(ctx, back)
		return nil, nil
	case <-ctx.Done():
		c.Disconnect(&paho.Disconnect{})
		conn.Close()
		<-c.Done()
		return nil, nil
	}
	s.setLive(nil)
	s.rec.connLost()
	return to, nil
}

// away waits, disconnected, until back is closed.
func (s *subscriber) away(ctx context.Context, back chan struct{}) {
	s.setLive(nil)
	select {
	case <-back:
	case <-ctx.Done():
	}
}

// session3 is session5 for a paho.mqtt.golang 3.1.1 client.
func (s *subscriber) session3(ctx context.Context, n *clustertest.Node, first bool, ready chan<- struct{}) (*clustertest.Node, error) {
	lost := make(chan struct{})
	o := opts3(n.MQTT(), s.id, s.clean).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { s.rec.received(string(m.Payload())) }).
		SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(connectTimeout + time.Second) {
		c.Disconnect(0)
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	present := tok.(*mqtt.ConnectToken).SessionPresent()
	if first || !present {
		st := c.SubscribeMultiple(s.filters, nil)
		if !st.WaitTimeout(connectTimeout) || st.Error() != nil {
			c.Disconnect(0)
			return nil, fmt.Errorf("subscribe: %v", st.Error())
		}
		for f, q := range st.(*mqtt.SubscribeToken).Result() {
			if q >= 0x80 {
				c.Disconnect(0)
				return nil, fmt.Errorf("SUBACK 0x%02x for %s", q, f)
			}
		}
	}
	s.rec.connUsable(present, first)
	s.setLive(n)
	if first {
		close(ready)
	}
	var to *clustertest.Node
	select {
	case <-lost:
	case to = <-s.move:
		c.Disconnect(0) // 3.1.1 has no abrupt close in paho.mqtt.golang: DISCONNECT keeps the session
	case back := <-s.pause:
		c.Disconnect(0)
		s.away(ctx, back)
		return nil, nil
	case <-ctx.Done():
		c.Disconnect(0)
		return nil, nil
	}
	s.setLive(nil)
	s.rec.connLost()
	return to, nil
}
