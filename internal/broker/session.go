package broker

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
)

// expiryNever is the Session Expiry Interval that never expires.
const expiryNever = 0xFFFFFFFF

// subOpts is what a session subscribed a filter with.
type subOpts struct {
	QoS     byte
	NoLocal bool
	RAP     bool // retain as published
	RH      byte // retain handling
	ID      uint32
}

// Outbound message states.
const (
	outQueued   uint8 = iota // waiting for the in-flight window
	outSent                  // PUBLISH sent, waiting for PUBACK or PUBREC
	outReleased              // PUBREL sent, waiting for PUBCOMP
)

// outMsg is one message on its way to one session.
type outMsg struct {
	msg     *Message
	qos     byte
	retain  bool
	state   uint8
	stored  bool // has a Messages record
	keep    bool // a copy of an AllOrNothing or Keep message: drop_oldest never evicts it
	waiting bool // its PUBLISH or PUBREL waits for the record to be durable
	pid     uint16
	seq     uint64   // session order; the Messages key when stored
	subIDs  []uint32 // subscription identifiers to send (v5)
	group   string   // the shared subscription it came through, for redispatch
	filter  string
	lseq    uint64 // its sequence in the cluster's log (csession.go); 0: none

	// body is the stored body its record references (bodies.go); nil
	// while not stored, and for a record loaded in the older inline form.
	body *body
}

// session is the server side of an MQTT session: subscriptions, QoS state
// and the queue. It outlives connections when its expiry is not zero.
type session struct {
	b      *Broker
	id     string
	online atomic.Bool // a connection is attached; read without mu by shared routing

	mu          sync.Mutex
	conn        *conn
	info        *ClientInfo
	version     packet.Version
	expiry      uint32 // Session Expiry Interval, seconds
	persistent  bool   // expiry > 0: the store keeps it
	gone        bool   // ended; deliveries are dropped
	owner       string // the identity the session belongs to ("" anonymous)
	ownerKnown  bool   // false for a record older than ownership: the next client claims it
	qbytes      int    // bytes of the queued messages' topics and payloads
	subs        map[string]subOpts
	inflight    map[uint16]*outMsg
	queue       []*outMsg
	qhead       int
	inQoS2      map[uint16]uint8 // inbound QoS 2 packet ids until PUBREL
	nextPID     uint16
	seq         uint64
	discAt      int64 // Unix seconds of the last disconnect
	connWill    *will // the attached connection's will
	pendingWill *will // a delayed will waiting after a disconnect
	willTimer   *time.Timer
	expTimer    *time.Timer
	// claim names this node's claim on the client id in the cluster's
	// Registry (Claim.Token); 0 without one.
	claim uint64
	// held are routing passes whose publisher's acknowledgement waits for
	// the queue to drain (backpressure.go); holdTimer bounds the wait, and
	// stalled stops new holds until the queue drains.
	held      []*storeWait
	holdTimer *time.Timer
	stalled   bool
	// cs is the session's state in the cluster's log (csession.go).
	cs *csess
	// rhold: the session holds the node's reader of the log
	// (ReaderHolder), given back when it ends here (unregister).
	rhold bool
}

func newSession(b *Broker, id string) *session { return &session{b: b, id: id} }

// qlen is the number of queued messages.
func (s *session) qlenLocked() int { return len(s.queue) - s.qhead }

// window is how many QoS 1/2 messages may be in flight to c [MQTT-4.9.0-2].
func (s *session) window(c *conn) int {
	w := int(c.recvMax)
	if m := int(s.b.cfg.MaxInflight); m > 0 && m < w {
		w = m
	}
	return max(w, 1)
}

// newPIDLocked returns a packet identifier not in flight [MQTT-2.2.1-3].
func (s *session) newPIDLocked() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			continue
		}
		if _, used := s.inflight[s.nextPID]; !used {
			return s.nextPID
		}
	}
}

// enqueueLocked queues om, applying the overflow policy at
// MaxQueuedMessages or MaxQueuedBytes.
func (s *session) enqueueLocked(om *outMsg, w *storeWait) {
	n := om.size()
	om.keep = om.keep || om.msg.AllOrNothing || om.msg.Keep
	for s.qlenLocked() > 0 && s.queueFullLocked(n) && !om.msg.AllOrNothing { // Publish checked it fits (fullSession)
		// drop_oldest evicts the oldest copy that may go: a kept one (a
		// command committed in Kafka) never does. With only kept ones
		// queued, the new message is dropped as with drop_new.
		i := -1
		if s.b.cfg.QueueOverflow == "drop_oldest" {
			i = slices.IndexFunc(s.queue[s.qhead:], func(q *outMsg) bool { return !q.keep })
		}
		if i < 0 {
			s.b.drop(s.id, om.msg, DropQueueFull)
			return
		}
		s.dropLocked(s.removeLocked(s.qhead+i), DropQueueFull)
	}
	if s.persistent && om.qos > 0 {
		s.storeLocked(om, w)
	}
	if s.qhead > 32 && s.qhead*2 > len(s.queue) {
		n := copy(s.queue, s.queue[s.qhead:])
		clear(s.queue[n:])
		s.queue, s.qhead = s.queue[:n], 0
	}
	s.queue = append(s.queue, om)
	s.qbytes += n
	s.b.stats.queued.Add(1)
}

// queueFullLocked says whether a message of n bytes does not fit the queue.
func (s *session) queueFullLocked(n int) bool {
	msgs, bytes := s.queueLimitsLocked()
	return msgs > 0 && s.qlenLocked() >= msgs || bytes > 0 && s.qbytes+n > bytes
}

// queueLimitsLocked are the queue's message and byte limits: the bridge
// limits for a session of mqtt.bridge_clients (see isBridgeLocked), so that
// a `culex bridge` restarting under load finds what arrived meanwhile.
func (s *session) queueLimitsLocked() (msgs, bytes int) {
	cfg := &s.b.cfg
	if s.isBridgeLocked() {
		return cfg.BridgeMaxQueuedMessages, cfg.BridgeMaxQueuedBytes
	}
	return cfg.MaxQueuedMessages, cfg.MaxQueuedBytes
}

// isBridgeLocked says whether s is named in mqtt.bridge_clients: where
// sessions have owners (an Authenticator, without BridgeClientIDs), by its
// owner only, so that an anonymous client or another identity that takes a
// bridge's client id gets a device's queue; otherwise by client id.
func (s *session) isBridgeLocked() bool {
	if len(s.b.bridges) == 0 {
		return false
	}
	if s.b.owns() && !s.b.opts.BridgeClientIDs {
		return s.owner != "" && s.b.bridges[s.owner]
	}
	return s.b.bridges[s.id]
}

// LimitsRequest is the CONNECT user property (any value) with which a
// client asks for its session's queue limits: CONNACK then carries
// culex.max_queued_messages, culex.max_queued_bytes and culex.bridge_client
// (true for a session of mqtt.bridge_clients). `culex bridge` asks, to
// warn when its source would drop what arrives during a restart.
const LimitsRequest = "culex.limits"

// limitsPropsLocked answers a LimitsRequest in CONNACK's properties.
func (s *session) limitsPropsLocked(connect, connack *packet.Properties) {
	if !slices.ContainsFunc(connect.User, func(u packet.UserProperty) bool { return u.Key == LimitsRequest }) {
		return
	}
	msgs, bytes := s.queueLimitsLocked()
	connack.User = append(connack.User,
		packet.UserProperty{Key: "culex.max_queued_messages", Value: strconv.Itoa(msgs)},
		packet.UserProperty{Key: "culex.max_queued_bytes", Value: strconv.Itoa(bytes)},
		packet.UserProperty{Key: "culex.bridge_client", Value: strconv.FormatBool(s.isBridgeLocked())})
	connack.Set(packet.PropUser)
}

// bridgeClients is the set of mqtt.bridge_clients.
func bridgeClients(list string) map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c != "" {
			m[c] = true
		}
	}
	return m
}

// size is what a queued message counts towards MaxQueuedBytes: the
// message's size (shared with other sessions, but each queue may be the
// last to hold it).
func (om *outMsg) size() int { return om.msg.size() }

// dropLocked counts a copy that will not be delivered and deletes its record.
func (s *session) dropLocked(om *outMsg, r DropReason) {
	s.b.drop(s.id, om.msg, r)
	s.unstoreLocked(om)
}

// popLocked removes the oldest queued message.
func (s *session) popLocked() *outMsg { return s.removeLocked(s.qhead) }

// removeLocked removes the queued message at index i of s.queue.
func (s *session) removeLocked(i int) *outMsg {
	om := s.queue[i]
	copy(s.queue[s.qhead+1:i+1], s.queue[s.qhead:i])
	s.queue[s.qhead] = nil
	s.qhead++
	s.qbytes -= om.size()
	s.b.stats.queued.Add(-1)
	if s.qhead == len(s.queue) {
		s.queue, s.qhead, s.qbytes = nil, 0, 0
	}
	return om
}

// pump moves queued messages into the window of c while it has room.
func (s *session) pump(c *conn) {
	s.mu.Lock()
	if s.conn == c {
		s.pumpLocked(c)
	}
	s.unlock()
}

func (s *session) pumpLocked(c *conn) {
	if s.qlenLocked() == 0 {
		return
	}
	now := time.Now().UnixNano()
	win := s.window(c)
	for s.qlenLocked() > 0 && len(s.inflight) < win {
		if c.overBound() {
			return
		}
		om := s.popLocked()
		if om.msg.expired(now) {
			s.b.drop(s.id, om.msg, DropExpired)
			s.unstoreLocked(om)
			continue
		}
		if om.qos == 0 {
			c.sendPublish(om, nil, now)
			continue
		}
		if om.stored && (om.qos == 2 || s.cwaitingLocked()) {
			s.sendDurableLocked(om, nil)
			continue
		}
		s.sendNewLocked(c, om, nil, now)
	}
}

// sendNewLocked assigns a packet id to om and sends it, unless it is over
// the client's Maximum Packet Size (then it is dropped and forgotten).
func (s *session) sendNewLocked(c *conn, om *outMsg, sc *scratch, now int64) bool {
	om.pid = s.newPIDLocked()
	om.state = outSent
	if !c.sendPublish(om, sc, now) {
		om.pid, om.state = 0, outQueued
		s.unstoreLocked(om)
		return false
	}
	if s.inflight == nil {
		s.inflight = make(map[uint16]*outMsg)
	}
	s.inflight[om.pid] = om
	return true
}

// resumeLocked re-sends the in-flight messages to a new connection with DUP
// set, or PUBREL for those released [MQTT-4.4.0-1], then pumps the queue.
func (s *session) resumeLocked(c *conn) {
	if len(s.inflight) > 0 {
		list := make([]*outMsg, 0, len(s.inflight))
		for _, om := range s.inflight {
			list = append(list, om)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
		now := time.Now().UnixNano()
		for _, om := range list {
			if om.waiting {
				continue // sent by afterStored once durable
			}
			if om.state == outReleased {
				c.sendPacket(&packet.Ack{Kind: packet.PUBREL, PacketID: om.pid})
				continue
			}
			c.resendPublish(om, now)
		}
	}
	s.pumpLocked(c)
}

// onPuback completes a QoS 1 delivery [MQTT-4.3.2].
func (s *session) onPuback(c *conn, pid uint16) {
	s.mu.Lock()
	defer s.unlock()
	om := s.inflight[pid]
	if om == nil || om.qos != 1 || s.conn != c {
		return
	}
	delete(s.inflight, pid)
	s.unstoreLocked(om)
	om.msg.settled(true)
	s.pumpLocked(c)
}

// onPubrec moves a QoS 2 delivery to the released state and sends PUBREL
// [MQTT-4.3.3-4]; a failure reason code ends the delivery.
func (s *session) onPubrec(c *conn, pid uint16, rc byte) {
	s.mu.Lock()
	defer s.unlock()
	if s.conn != c {
		return
	}
	om := s.inflight[pid]
	if om == nil || om.qos != 2 {
		if rc < 0x80 {
			c.sendAck(packet.PUBREL, pid, packet.ErrPacketIDNotFound)
		}
		return
	}
	if rc >= 0x80 {
		delete(s.inflight, pid)
		s.unstoreLocked(om)
		om.msg.settled(true)
		s.pumpLocked(c)
		return
	}
	if om.state != outReleased {
		om.state = outReleased
		om.msg.settled(true)
		if om.stored {
			// PUBREL only once the released state is durable: after a crash
			// the broker re-sends PUBREL, never the PUBLISH [MQTT-4.3.3].
			s.storeThenLocked(om, nil)
			return
		}
	}
	if !om.waiting {
		c.sendAck(packet.PUBREL, pid, packet.Success)
	}
}

// onPubcomp completes a QoS 2 delivery.
func (s *session) onPubcomp(c *conn, pid uint16) {
	s.mu.Lock()
	defer s.unlock()
	om := s.inflight[pid]
	if om == nil || om.state != outReleased || s.conn != c {
		return
	}
	delete(s.inflight, pid)
	s.unstoreLocked(om)
	s.pumpLocked(c)
}

// storeLocked writes om's Messages record, and its body if no other
// record references it yet (bodies.go).
func (s *session) storeLocked(om *outMsg, w *storeWait) {
	if s.b.cstore != nil {
		s.ctrackLocked(om)
		return
	}
	om.stored = true
	ops, held := s.refOpsLocked(om)
	s.b.apply(ops, w)
	held.unlock()
}

// unstoreLocked deletes om's Messages record, if any, and its body with
// its last reference.
func (s *session) unstoreLocked(om *outMsg) {
	if s.b.cstore != nil {
		s.cdoneLocked(om)
		return
	}
	if !om.stored {
		return
	}
	om.stored = false
	ops := make([]store.Op, 1, 2)
	ops[0] = store.Op{Kind: store.Delete, Bucket: store.Messages, Key: store.MessageKey(s.id, om.seq)}
	if op, last := s.b.releaseBody(om); last {
		ops = append(ops, op)
	}
	s.b.apply(ops, nil)
}

// sendDurableLocked puts om in flight with a packet id and sends it once its
// record, with that id, is durable. QoS 2 copies for persistent sessions go
// this way, so that a crash never makes the broker re-send a delivery the
// client completed as a new message with a new packet id.
func (s *session) sendDurableLocked(om *outMsg, w *storeWait) {
	om.pid = s.newPIDLocked()
	om.state = outSent
	if s.inflight == nil {
		s.inflight = make(map[uint16]*outMsg)
	}
	s.inflight[om.pid] = om
	s.storeThenLocked(om, w)
}

// storeThenLocked writes om's record and, once it is durable, sends what
// om's state calls for (afterStored). w, if not nil, waits for the write.
func (s *session) storeThenLocked(om *outMsg, w *storeWait) {
	if s.b.cstore != nil {
		s.cstoreThenLocked(om, w)
		return
	}
	om.stored, om.waiting = true, true
	ops, held := s.refOpsLocked(om)
	if w != nil {
		w.n.Add(1) // released below, after afterStored
	}
	err, sync := s.b.applyThen(ops, func(err error) {
		s.b.logStoreErr(err)
		s.afterStored(om)
		if w != nil {
			w.done(err)
		}
	})
	held.unlock()
	if sync { // the store failed the write at once (closed)
		s.b.logStoreErr(err)
		s.afterStoredLocked(om)
		if w != nil {
			w.done(err)
		}
	}
}

// afterStored sends om's PUBLISH or PUBREL once its record is durable, to
// the session's connection of the moment (a resumed session's new one).
func (s *session) afterStored(om *outMsg) {
	s.mu.Lock()
	defer s.unlock()
	s.afterStoredLocked(om)
}

func (s *session) afterStoredLocked(om *outMsg) {
	if !om.waiting {
		return
	}
	om.waiting = false
	c := s.conn
	if c == nil || s.gone || s.inflight[om.pid] != om {
		return // a resumed connection re-sends it
	}
	if om.state == outReleased {
		c.sendAck(packet.PUBREL, om.pid, packet.Success)
		return
	}
	if !c.sendPublish(om, nil, time.Now().UnixNano()) {
		delete(s.inflight, om.pid)
		s.unstoreLocked(om)
		s.pumpLocked(c)
	}
}
