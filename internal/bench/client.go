package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// maxPending bounds the bytes queued on one connection before a publisher
// waits for the flush: enough to batch, small enough that at maximum load
// the latency measured is mostly the broker's queue, not ours.
const maxPending = 64 << 10

// writeTimeout bounds one write so a stuck broker fails the connection
// instead of hanging the run.
const writeTimeout = 30 * time.Second

// role is what a connection does after CONNACK.
type role byte

const (
	roleIdle role = iota
	rolePub
	roleSub
)

func (r role) String() string { return [...]string{"conn", "pub", "sub"}[r] }

// client is one MQTT connection: a reader goroutine that owns the
// subscriber state, and a write queue flushed by a short-lived goroutine
// started by whoever enqueues to an idle connection.
type client struct {
	r     *runner
	role  role
	idx   int // %i
	id    string
	topic string // publish topic or subscription filter
	user  string
	pass  string
	nc    net.Conn

	// Counters read by the live reporter.
	connected atomic.Bool
	sent      atomic.Int64
	acked     atomic.Int64
	recv      atomic.Int64
	uniq      atomic.Int64 // distinct messages over the subscriber's streams
	lastWrite atomic.Int64 // unix ns

	wmu      sync.Mutex
	wcond    sync.Cond // signalled when a flush ends or the queue shrinks
	wbuf     []byte    // queued bytes, guarded by wmu
	spare    []byte    // the buffer being written, swapped with wbuf
	flushing bool      // a flush goroutine runs
	werr     error     // first write error; the connection is dead
	stopping bool      // the run is closing: publishers stop waiting

	// Publisher state.
	window   chan struct{} // one token per unacknowledged QoS > 0 publish
	pmu      sync.Mutex
	inflight map[uint16]struct{} // guarded by pmu
	nextID   uint16              // guarded by pmu
	payload  []byte
	pub      packet.Publish

	// Subscriber state, owned by the reader goroutine.
	in           packet.Publish
	streams      map[uint32]*stream
	firstRecv    time.Time
	lastRecv     time.Time
	subscribedOK bool
}

func newClient(r *runner, ro role, idx int) *client {
	c := &client{r: r, role: ro, idx: idx}
	c.wcond.L = &c.wmu
	cfg := r.cfg
	c.id = cfg.ClientID.Expand(idx, "")
	if r.cfg.Mode == "run" {
		c.id = ro.String() + "-" + c.id
	}
	c.user = cfg.Username.Expand(idx, c.id)
	c.pass = cfg.Password.Expand(idx, c.id)
	switch ro {
	case rolePub:
		c.topic = cfg.Topic.Expand(idx, c.id)
		c.payload = newPayload(cfg.Size)
		c.inflight = make(map[uint16]struct{})
	case roleSub:
		c.topic = cfg.SubTopic.Expand(idx, c.id)
		c.streams = make(map[uint32]*stream)
	}
	return c
}

// handshake dials, sends CONNECT and waits for CONNACK, then for a
// subscriber sends SUBSCRIBE and waits for SUBACK, all within the timeout.
func (c *client) handshake(ctx context.Context) (err error) {
	cfg := c.r.cfg
	defer func() {
		if err != nil && c.nc != nil {
			c.nc.Close()
		}
	}()
	start := time.Now()
	addr := c.r.target.Addr
	if sa := c.r.target.SubAddrs; c.role == roleSub && len(sa) > 0 {
		addr = sa[c.idx%len(sa)]
	}
	nc, err := c.r.target.DialAddr(ctx, addr)
	if err != nil {
		return c.r.fail("connect", err)
	}
	nc = fast(nc)
	c.nc = nc
	nc.SetDeadline(time.Now().Add(cfg.Timeout))
	conn := packet.Connect{
		ProtocolName: "MQTT", Version: cfg.Version, CleanStart: cfg.Clean,
		KeepAlive: uint16(cfg.KeepAlive / time.Second), ClientID: c.id,
		UsernameFlag: c.user != "", Username: c.user,
		PasswordFlag: c.pass != "", Password: []byte(c.pass),
	}
	if cfg.Version == packet.V31 {
		conn.ProtocolName = "MQIsdp"
	}
	if cfg.Version == packet.V5 && cfg.SessionExpiry > 0 {
		conn.Props.SessionExpiry = cfg.SessionExpiry
		conn.Props.Set(packet.PropSessionExpiry)
	}
	b, err := conn.Encode(nil, cfg.Version)
	if err == nil {
		_, err = nc.Write(b)
	}
	if err != nil {
		return c.r.fail("connect", err)
	}
	pr := newPktReader(nc)
	p, err := c.await(pr, packet.CONNACK)
	if err != nil {
		return c.r.fail("connack", err)
	}
	ack := p.(*packet.Connack)
	if ack.ReasonCode != 0 {
		return c.r.fail("connack", reasonError(cfg.Version, ack.ReasonCode))
	}
	connack := time.Since(start)
	window := cfg.Inflight
	if ack.Props.Has(packet.PropReceiveMaximum) && int(ack.Props.ReceiveMaximum) < window {
		window = int(ack.Props.ReceiveMaximum)
	}
	c.window = make(chan struct{}, max(window, 1))
	if c.role == roleSub {
		if err := c.subscribe(pr); err != nil {
			return err
		}
	}
	// Counted once the client is ready: a failed attempt may be retried.
	if ack.SessionPresent {
		c.r.sessionPresent.Add(1)
	}
	c.r.connLat.record(c.idx, connack)
	nc.SetDeadline(time.Time{})
	c.lastWrite.Store(time.Now().UnixNano())
	c.connected.Store(true)
	c.r.connected.Add(1)
	c.r.wg.Add(1)
	go c.readLoop(pr)
	return nil
}

func (c *client) subscribe(pr *pktReader) error {
	cfg := c.r.cfg
	sub := packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: c.topic, QoS: cfg.SubQoS}}}
	b, err := sub.Encode(nil, cfg.Version)
	if err == nil {
		_, err = c.nc.Write(b)
	}
	if err != nil {
		return c.r.fail("subscribe", err)
	}
	p, err := c.await(pr, packet.SUBACK)
	if err != nil {
		return c.r.fail("suback", err)
	}
	for _, code := range p.(*packet.Suback).ReasonCodes {
		if code >= 0x80 {
			return c.r.fail("suback", reasonError(cfg.Version, code))
		}
	}
	c.subscribedOK = true
	c.r.subscribed.Add(1)
	return nil
}

// await reads until a packet of type t, handling anything else (a retained
// message before the SUBACK) as the reader loop would.
func (c *client) await(pr *pktReader, t packet.Type) (packet.Packet, error) {
	for {
		fh, body, err := pr.next()
		if err != nil {
			return nil, err
		}
		if fh.Type != t {
			if err := c.handle(fh, body); err != nil {
				return nil, err
			}
			continue
		}
		p, err := packet.Decode(fh, body, c.r.cfg.Version)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// readLoop handles packets until the connection closes.
func (c *client) readLoop(pr *pktReader) {
	defer c.r.wg.Done()
	for {
		if !pr.buffered() {
			// About to block in Read: write the acks queued so far in one
			// write, on this goroutine (acks are small; a full socket is
			// bounded by the write deadline).
			c.flushNow()
		}
		fh, body, err := pr.next()
		if err == nil {
			err = c.handle(fh, body)
		}
		if err != nil {
			if !c.r.closing.Load() {
				c.r.fail("read", err)
			}
			c.connected.Store(false)
			c.r.connected.Add(-1)
			c.shutdown()
			return
		}
	}
}

// handle processes one inbound packet on the reader goroutine.
func (c *client) handle(fh packet.FixedHeader, body []byte) error {
	v := c.r.cfg.Version
	switch fh.Type {
	case packet.PUBLISH:
		if err := c.in.Decode(fh, body, v); err != nil {
			return err
		}
		c.onPublish(&c.in)
		switch c.in.QoS {
		case 1:
			c.sendAck(packet.PUBACK, c.in.PacketID)
		case 2:
			c.sendAck(packet.PUBREC, c.in.PacketID)
		}
		return nil
	case packet.PUBACK, packet.PUBREC, packet.PUBREL, packet.PUBCOMP:
		var a packet.Ack
		if err := a.Decode(fh, body, v); err != nil {
			return err
		}
		c.onAck(&a)
		return nil
	case packet.DISCONNECT:
		var d packet.Disconnect
		if err := d.Decode(fh, body, v); err != nil {
			return err
		}
		return fmt.Errorf("DISCONNECT from broker: %w", reasonError(v, d.ReasonCode))
	case packet.PINGRESP, packet.SUBACK, packet.UNSUBACK, packet.CONNACK, packet.AUTH:
		return nil
	}
	return fmt.Errorf("unexpected %s", fh.Type)
}

func (c *client) onAck(a *packet.Ack) {
	switch a.Kind {
	case packet.PUBREL: // we are the receiver of a QoS 2 message
		c.sendAck(packet.PUBCOMP, a.PacketID)
		return
	case packet.PUBREC:
		if a.ReasonCode < 0x80 {
			c.sendAck(packet.PUBREL, a.PacketID)
			return
		}
	}
	if a.ReasonCode >= 0x80 {
		c.r.fail(a.Kind.String(), reasonError(c.r.cfg.Version, a.ReasonCode))
	}
	c.pmu.Lock()
	_, ok := c.inflight[a.PacketID]
	delete(c.inflight, a.PacketID)
	c.pmu.Unlock()
	if ok {
		c.acked.Add(1)
		<-c.window
	}
}

// onPublish times and sequences one received message.
func (c *client) onPublish(p *packet.Publish) {
	now := time.Now()
	c.recv.Add(1)
	if c.firstRecv.IsZero() {
		c.firstRecv = now
	}
	c.lastRecv = now
	pub, seq, sent, ok := readStamp(p.Payload)
	if !ok || seq == 0 {
		return
	}
	if d := now.UnixNano() - sent; d >= 0 {
		c.r.lat.record(c.idx, time.Duration(d))
	}
	st := c.streams[pub]
	if st == nil {
		st = &stream{}
		if c.r.cfg.Mode != "run" && c.r.cfg.SeqFile == "" && c.r.cfg.Expect == 0 {
			st.max = seq - 1 // joined mid-stream: earlier messages are not loss
		}
		c.streams[pub] = st
	}
	u := st.unique
	st.add(seq)
	if st.unique != u {
		c.uniq.Add(1)
	}
}

// kickLocked starts a flush goroutine if none runs.
func (c *client) kickLocked() {
	if !c.flushing && c.werr == nil {
		c.flushing = true
		c.r.wg.Add(1)
		go c.flush()
	}
}

// sendAck queues an ack; the reader writes its acks in one batch once it
// has handled every packet it has read (see readLoop).
func (c *client) sendAck(kind packet.Type, id uint16) {
	a := packet.Ack{Kind: kind, PacketID: id}
	c.wmu.Lock()
	c.wbuf, _ = a.Encode(c.wbuf, c.r.cfg.Version)
	c.wmu.Unlock()
}

func (c *client) sendControl(p packet.Packet) {
	c.wmu.Lock()
	c.wbuf, _ = p.Encode(c.wbuf, c.r.cfg.Version)
	c.kickLocked()
	c.wmu.Unlock()
}

// flush is the flush goroutine: it writes the queue until it is empty.
func (c *client) flush() {
	defer c.r.wg.Done()
	c.wmu.Lock()
	c.writeQueueLocked()
	c.wmu.Unlock()
}

// flushNow writes the queue on the calling goroutine unless a flush is
// already running (which then writes what was queued).
func (c *client) flushNow() {
	c.wmu.Lock()
	if !c.flushing && c.werr == nil && len(c.wbuf) > 0 {
		c.flushing = true
		c.writeQueueLocked()
	}
	c.wmu.Unlock()
}

// writeQueueLocked writes the queue until it is empty, releasing wmu
// around each write; the caller has set flushing.
func (c *client) writeQueueLocked() {
	for len(c.wbuf) > 0 && c.werr == nil {
		buf := c.wbuf
		c.wbuf = c.spare[:0]
		c.wcond.Broadcast()
		c.wmu.Unlock()
		err := c.write(buf)
		c.lastWrite.Store(time.Now().UnixNano())
		c.wmu.Lock()
		c.spare = buf[:0]
		if err != nil && c.werr == nil {
			c.werr = err
			if !c.r.closing.Load() {
				c.r.fail("write", err)
			}
		}
	}
	c.flushing = false
	c.wcond.Broadcast()
}

// write writes b whole, within writeTimeout.
func (c *client) write(b []byte) error {
	if t, ok := c.nc.(timedWriter); ok {
		return t.writeTimed(b, writeTimeout)
	}
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(b)
	return err
}

// timedWriter writes under a timeout without a deadline per write
// (fastConn).
type timedWriter interface {
	writeTimed(b []byte, timeout time.Duration) error
}

// publish queues one message. The publisher writes the queue itself (no
// goroutine handoff) after the last message of a batch or past maxPending;
// while another goroutine is flushing it waits for the queue to shrink.
// It reports false when the connection is dead or the run is stopping.
func (c *client) publish(seq uint64, last bool) bool {
	cfg := c.r.cfg
	p := &c.pub
	*p = packet.Publish{QoS: cfg.QoS, Retain: cfg.Retain, Topic: c.topic, Payload: c.payload}
	if p.QoS > 0 {
		c.pmu.Lock()
		for {
			c.nextID++
			if _, busy := c.inflight[c.nextID]; c.nextID != 0 && !busy {
				break
			}
		}
		p.PacketID = c.nextID
		c.inflight[p.PacketID] = struct{}{}
		c.pmu.Unlock()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(c.wbuf) > maxPending && c.flushing && c.werr == nil && !c.stopping {
		c.wcond.Wait()
	}
	if c.werr != nil || c.stopping {
		if p.QoS > 0 { // never sent: no ack will come for this id
			c.pmu.Lock()
			delete(c.inflight, p.PacketID)
			c.pmu.Unlock()
		}
		return false
	}
	if len(c.payload) >= headerLen {
		stampPayload(c.payload, uint32(c.idx), seq+max(cfg.SeqStart, 1)-1, time.Now())
	}
	var err error
	if c.wbuf, err = p.EncodeHeader(c.wbuf, cfg.Version); err != nil {
		c.werr = err
		c.r.fail("publish", err)
		return false
	}
	c.wbuf = append(c.wbuf, c.payload...)
	c.sent.Add(1)
	if (last || len(c.wbuf) > maxPending) && !c.flushing {
		c.flushing = true
		c.writeQueueLocked()
	}
	return c.werr == nil
}

// inflightCount is the number of unacknowledged QoS > 0 publishes.
func (c *client) inflightCount() int {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return len(c.inflight)
}

// wakePublisher wakes a publisher blocked on the queue so it can exit.
func (c *client) wakePublisher() {
	c.wmu.Lock()
	c.stopping = true
	c.wcond.Broadcast()
	c.wmu.Unlock()
}

// idle reports whether everything queued has been written.
func (c *client) idle() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return !c.flushing || c.werr != nil
}

// shutdown closes the socket; the reader and flusher then exit.
func (c *client) shutdown() {
	c.wakePublisher()
	c.nc.Close()
}
