package broker

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/listener"
	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/netpoll"
)

// readBufSize is the size of the pooled read buffers. A packet that does not
// fit is read straight into its own exact-size allocation.
const readBufSize = 16 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// Connection states.
const (
	stateNew       uint8 = iota // waiting for CONNECT
	stateAuth                   // v5 enhanced authentication in progress
	stateConnected              // CONNACK sent
)

// conn is the protocol side of one client connection; sock is its socket
// (internal/netpoll), which runs its reader: whoever runs the reader owns
// every field above wmu; the rest say who guards them.
type conn struct {
	b    *Broker
	sock *netpoll.Conn
	info *ClientInfo
	sess *session // set once connected; never changes
	// gauge counts this connection in its listener's and protocol's
	// connections from the CONNECT that took a slot to the release.
	gauge *atomic.Int64

	state     uint8
	version   packet.Version
	problem   bool          // v5 Request Problem Information: reason strings allowed
	got       bool          // the last readOnce read MQTT bytes (a WebSocket ping alone is none)
	keepAlive time.Duration // read deadline after each read; 0: none
	maxPacket uint32        // client's Maximum Packet Size; 0: none
	recvMax   uint16        // client's Receive Maximum
	aliasMax  uint16        // client's Topic Alias Maximum
	fh        packet.FixedHeader
	body      []byte // partial packet body
	have      int    // bytes of body read so far
	hdr       [5]byte
	nhdr      uint8
	inAlias   map[uint16]string // client's topic aliases, lazily made
	aliasLen  int               // bytes of the inAlias topics, at most MaxPacketSize
	auth      *authState        // v5 enhanced authentication exchange
	normal    bool              // DISCONNECT 0x00 received: no will

	// outAlias is the Topic Aliases we assigned; guarded by the session's mu
	// like every other delivery state.
	outAlias outAliases

	// wmu guards wver, the version for server-initiated packets from other
	// goroutines.
	wmu  sync.Mutex
	wver packet.Version

	// pmu guards the inbound PUBLISH pipeline (see inbound.go).
	pmu      sync.Mutex
	pend     []*pending
	routeIdx int
	routing  bool
	qos1In   int           // QoS 1 publishes received and not yet acknowledged
	pwait    chan struct{} // closed when a throttled reader may go on
	// throttled is set while the reader waits in throttle.
	throttled atomic.Bool
	// room is a congested route's channel that a QoS 0 publish routed
	// off the reader went to (routePending), for the reader to wait on
	// (waitRoom); roomSet says it is set, read without pmu.
	room    <-chan struct{}
	roomSet atomic.Bool
}

var _ netpoll.Handler = (*conn)(nil)

// Handle serves one connection and closes conn. A TCP, TLS or WebSocket
// (over TCP or TLS) connection is parked in the engine's poller and Handle
// returns at once: no goroutine waits for an idle connection, one runs
// only while there is something to read (internal/netpoll). Other
// connections (no poller on this platform) are served on the caller's
// goroutine, blocked in Read, until they end. Either way Shutdown waits
// for the reader.
func (b *Broker) Handle(nc net.Conn, info listener.ConnInfo) {
	c := b.newConn(nc, &info)
	if c == nil {
		return
	}
	c.sock.Start(c.connectTimeout())
}

// newConn registers a connection, or closes it and returns nil when the
// broker is stopping.
func (b *Broker) newConn(nc net.Conn, info *listener.ConnInfo) *conn {
	c := &conn{b: b, recvMax: 65535, problem: true}
	c.info = &ClientInfo{Remote: info.Remote, Listener: info.Listener, TLS: info.TLS}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing || b.stopping || b.draining.Load() {
		nc.Close()
		return nil
	}
	if c.sock = b.engineLocked().Open(nc, c); c.sock == nil {
		return nil
	}
	b.conns[c] = struct{}{}
	return c
}

// Step reads what the socket holds and handles it (netpoll.Handler); only
// MQTT bytes count as traffic for the keep-alive [MQTT-3.1.2-24].
func (c *conn) Step() error {
	err := c.readOnce()
	if err == nil && c.got && c.keepAlive > 0 {
		c.sock.Touch(c.keepAlive)
	}
	return err
}

// Expired is the error for a client that sent nothing in time
// (netpoll.Handler).
func (c *conn) Expired() error { return c.timedOut() }

// Drained pumps the session once the socket took what the outbound bound
// held back (netpoll.Handler).
func (c *conn) Drained() {
	if c.sess != nil {
		c.sess.pump(c)
	}
}

// setReadTimeout sets how long the client may send nothing: the CONNECT
// timeout, then 1.5 times its keep-alive; 0 means forever.
func (c *conn) setReadTimeout(d time.Duration) { c.sock.SetReadTimeout(d) }

// mayBlock gives up the reader's fast slot before a call that may wait (an
// authenticator, a throttled publisher), so that ready connections do not
// wait behind it.
func (c *conn) mayBlock() { c.sock.MayBlock() }

// readOnce reads what the socket holds and handles it.
func (c *conn) readOnce() error {
	c.got = false
	if c.body != nil {
		return c.readBody()
	}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	for {
		full, err := c.readPackets(*bp)
		// A busy connection filled the buffer: go on while more is
		// already there, without a round trip through the reader.
		if err != nil || !full || c.body != nil || !c.sock.More() {
			return err
		}
	}
}

// readBody continues a packet too large for what the last read returned,
// reading straight into its body: an exact-size one once connected, and
// before that one that grows with the bytes that came (partialBody).
func (c *conn) readBody() error {
	if c.have == len(c.body) {
		body := make([]byte, min(2*len(c.body), c.fh.Remaining))
		copy(body, c.body)
		c.body = body
	}
	n, err := c.sock.Read(c.body[c.have:])
	c.got = c.got || n > 0
	c.have += n
	if c.have == c.fh.Remaining {
		body := c.body
		c.body, c.have = nil, 0
		if herr := c.handle(c.fh, body); herr != nil {
			return herr
		}
	}
	return err
}

// readPackets reads into the pooled buf and handles every complete packet,
// copying each body into an exact-size allocation the packet aliases. A
// partial packet keeps only its own bytes.
func (c *conn) readPackets(buf []byte) (full bool, err error) {
	n := copy(buf, c.hdr[:c.nhdr])
	c.nhdr = 0
	m, rerr := c.sock.Read(buf[n:])
	c.got = c.got || m > 0
	full = n+m == len(buf)
	data := buf[:n+m]
	for len(data) > 0 {
		fh, hl, err := packet.ParseFixedHeader(data)
		if errors.Is(err, packet.ErrIncomplete) {
			c.nhdr = uint8(copy(c.hdr[:], data))
			break
		}
		if err != nil {
			return false, c.fail(codeOf(err, packet.ErrMalformedPacket))
		}
		if max := c.maxPacketIn(); max > 0 && hl+fh.Remaining > max {
			if c.state == stateNew {
				return false, c.connectTooLarge(data[hl:])
			}
			return false, c.fail(packet.ErrPacketTooLarge)
		}
		end := hl + fh.Remaining
		if len(data) < end {
			c.fh, c.body = fh, c.partialBody(fh.Remaining, len(data)-hl)
			c.have = copy(c.body, data[hl:])
			break
		}
		body := data[hl:end:end]
		if !isAck(fh.Type) {
			body = make([]byte, fh.Remaining)
			copy(body, data[hl:end])
		}
		data = data[end:]
		if err := c.handle(fh, body); err != nil {
			return false, err
		}
	}
	if rerr != nil {
		return false, rerr
	}
	return full, nil
}

// maxPacketIn is the largest packet the client may send now: before
// CONNACK, CONNECT and AUTH are capped far below the largest packet
// (MaxConnectPacketSize), since they come before authentication.
func (c *conn) maxPacketIn() int {
	max := int(c.b.cfg.MaxPacketSize)
	if cm := int(c.b.cfg.MaxConnectPacketSize); c.state != stateConnected && cm > 0 && (max == 0 || cm < max) {
		max = cm
	}
	return max
}

// partialBody is the body buffer of a packet of size bytes of which got
// came: exact once connected; before, only twice what came (at least 1
// KiB), grown by readBody as more comes, so that a client that declares a
// large CONNECT and sends little pins little.
func (c *conn) partialBody(size, got int) []byte {
	if c.state == stateConnected {
		return make([]byte, size)
	}
	return make([]byte, min(size, max(2*got, 1<<10)))
}

// connectTooLarge refuses a CONNECT over maxPacketIn, from its first bytes
// vh: with CONNACK 0x95 if they say MQTT 5, else by closing. The socket
// closes gracefully: the client is still sending the packet.
func (c *conn) connectTooLarge(vh []byte) error {
	c.sock.Linger()
	if len(vh) >= 2 {
		if n := int(vh[0])<<8 | int(vh[1]); len(vh) > 2+n && vh[2+n] == 5 {
			c.version = packet.V5
			return c.refuse(packet.ErrPacketTooLarge, nil)
		}
	}
	return packet.ErrPacketTooLarge
}

// timedOut is the error for a client that sent nothing in time.
func (c *conn) timedOut() error {
	if c.state == stateConnected {
		return c.fail(packet.ErrKeepAliveTimeout) // [MQTT-3.1.2-24]
	}
	return errConnectTimeout
}

// handle decodes and dispatches one packet.
func (c *conn) handle(fh packet.FixedHeader, body []byte) error {
	switch c.state {
	case stateNew:
		if fh.Type != packet.CONNECT {
			return errNotConnect // [MQTT-3.1.0-1]
		}
	case stateAuth:
		if fh.Type != packet.AUTH && fh.Type != packet.DISCONNECT {
			return c.fail(packet.ErrProtocolError)
		}
	}
	if fh.Type == packet.CONNECT && c.state != stateNew {
		return c.fail(packet.ErrProtocolError) // [MQTT-3.1.0-2]
	}
	switch {
	case fh.Type == packet.PUBLISH:
		return c.handlePublish(fh, body)
	case isAck(fh.Type):
		var a packet.Ack
		if err := a.Decode(fh, body, c.version); err != nil {
			return c.fail(decodeCode(err))
		}
		return c.onAck(&a)
	}
	p, err := packet.Decode(fh, body, c.version)
	if err != nil {
		if fh.Type == packet.CONNECT {
			return c.connectDecodeErr(body, err)
		}
		return c.fail(decodeCode(err))
	}
	switch p := p.(type) {
	case *packet.Connect:
		return c.onConnect(p)
	case *packet.Ack:
		return c.onAck(p)
	case *packet.Subscribe:
		return c.onSubscribe(p)
	case *packet.Unsubscribe:
		return c.onUnsubscribe(p)
	case *packet.Pingreq:
		c.send(pingresp)
		return nil
	case *packet.Disconnect:
		return c.onDisconnect(p)
	case *packet.Auth:
		return c.onAuth(p)
	}
	return c.fail(packet.ErrProtocolError) // a server-to-client packet type
}

// publishes recycles decoded PUBLISH structs: a Message copies what it
// needs (its strings and slices alias the body, not the struct).
var publishes = sync.Pool{New: func() any { return new(packet.Publish) }}

func (c *conn) handlePublish(fh packet.FixedHeader, body []byte) error {
	p := publishes.Get().(*packet.Publish)
	defer func() { *p = packet.Publish{}; publishes.Put(p) }()
	if err := p.Decode(fh, body, c.version); err != nil {
		return c.fail(decodeCode(err))
	}
	c.b.stats.publishesIn[p.QoS&3].Add(1)
	return c.onPublish(p)
}

// isAck says t is PUBACK, PUBREC, PUBREL or PUBCOMP: packets that are
// decoded on the stack and whose handling keeps nothing of the body, which
// may then alias the read buffer (readPackets).
func isAck(t packet.Type) bool {
	return t == packet.PUBACK || t == packet.PUBREC || t == packet.PUBREL || t == packet.PUBCOMP
}

var pingresp = []byte{byte(packet.PINGRESP) << 4, 0}

// decodeCode is the reason code for a packet that did not decode.
func decodeCode(err error) packet.Code {
	return codeOf(err, packet.ErrMalformedPacket)
}

// codeOf finds the reason code in err, or def.
func codeOf(err error, def packet.Code) packet.Code {
	var code packet.Code
	if errors.As(err, &code) {
		return code
	}
	return def
}

// connError is why a connection ended, for logs and hooks.
type connError struct{ msg string }

func (e *connError) Error() string { return e.msg }

var (
	errNotConnect     = &connError{"first packet is not CONNECT"}
	errConnectTimeout = &connError{"no CONNECT within the connect timeout"}
	errShutdown       = packet.ErrServerShuttingDown
)

// fail ends the connection for a protocol violation: a v5 client is told why
// with DISCONNECT [MQTT-4.13.1-1]; older clients are just disconnected.
func (c *conn) fail(code packet.Code) error {
	if c.state == stateConnected && c.version == packet.V5 {
		c.sendDisconnect(code)
	}
	return code
}

// kick ends the connection from another goroutine (takeover, shutdown,
// administrative action): a v5 client gets DISCONNECT with code, and the
// reader is woken.
func (c *conn) kick(code packet.Code) {
	if c.sock.Kick(code) {
		c.pmu.Lock()
		c.wakeLocked()
		c.pmu.Unlock()
		c.wmu.Lock()
		v := c.wver
		c.wmu.Unlock()
		if v == packet.V5 {
			c.sendDisconnect(code)
		}
	}
	c.sock.Wake()
}

// Closed runs once when the reader stops (netpoll.Handler): it releases
// the session, then closes the socket once the queued bytes are written.
// Detaching first means no message is handed to a connection the client
// already saw close.
func (c *conn) Closed(err error) {
	c.body = nil
	if c.state == stateConnected {
		c.b.disconnected(c, err)
	}
	c.sock.Close()
	c.b.mu.Lock()
	delete(c.b.conns, c)
	c.b.mu.Unlock()
	if c.state == stateConnected {
		for _, h := range c.b.discHooks {
			h.OnDisconnect(c.info, hookErr(err))
		}
	}
}

func hookErr(err error) error {
	if err == errNormal {
		return nil
	}
	return err
}
