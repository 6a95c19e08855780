package broker

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

// onConnect validates CONNECT, authenticates the client and accepts it.
func (c *conn) onConnect(p *packet.Connect) error {
	// What the connection keeps of the CONNECT is copied out of its body,
	// which may be as large as the packet size allows.
	p.ClientID, p.Username = strings.Clone(p.ClientID), strings.Clone(p.Username)
	c.version = p.Version
	c.info.Version = p.Version
	c.info.Username = p.Username
	if p.Version == packet.V5 {
		c.clientLimits(&p.Props)
	}
	id, assigned, err := c.clientID(p)
	if err != nil {
		return err
	}
	c.info.ClientID = id
	if !p.UsernameFlag && !c.b.opts.AllowAnonymous {
		return c.refuse(packet.ErrBadUsernameOrPassword, nil)
	}
	if err := c.checkWill(p); err != nil {
		return err
	}
	if p.Version != packet.V5 && c.b.cfg.MaxKeepAlive > 0 && (p.KeepAlive == 0 || p.KeepAlive > c.b.cfg.MaxKeepAlive) {
		// A 3.1.1 client cannot be told the cap: refuse it as mosquitto does.
		return c.refuse(packet.ErrClientIdentifierNotValid, nil)
	}
	st := &authState{connect: p, assigned: assigned}
	if p.Version == packet.V5 && p.Props.AuthMethod != "" {
		return c.startAuth(st)
	}
	return c.finishAuth(st)
}

// clientLimits records what a v5 client allows us to send.
func (c *conn) clientLimits(p *packet.Properties) {
	if p.Has(packet.PropReceiveMaximum) && p.ReceiveMaximum > 0 {
		c.recvMax = p.ReceiveMaximum
	}
	if p.Has(packet.PropMaximumPacketSize) {
		c.maxPacket = p.MaximumPacketSize
	}
	if p.Has(packet.PropTopicAliasMaximum) {
		c.aliasMax = p.TopicAliasMaximum
	}
	if p.Has(packet.PropRequestProblemInfo) && p.RequestProblemInfo == 0 {
		c.problem = false
	}
}

// clientID applies the client identifier rules [MQTT-3.1.3-5..8].
func (c *conn) clientID(p *packet.Connect) (id string, assigned bool, err error) {
	id = p.ClientID
	if id == "" {
		if p.Version != packet.V5 && !p.CleanStart {
			return "", false, c.refuse(packet.ErrClientIdentifierNotValid, nil) // [MQTT-3.1.3-8]
		}
		return "auto-" + strconv.FormatUint(uint64(time.Now().UnixNano())&0xFFFFFFFFFF, 36) +
			"-" + strconv.FormatUint(c.b.idSeq.Add(1), 36), true, nil // [MQTT-3.1.3-6]
	}
	if max := c.b.cfg.MaxClientIDLength; max > 0 && len(id) > max {
		return "", false, c.refuse(packet.ErrClientIdentifierNotValid, nil)
	}
	return id, false, nil
}

// checkWill validates the will against our limits [MQTT-3.2.2-12,13].
func (c *conn) checkWill(p *packet.Connect) error {
	if !p.WillFlag {
		return nil
	}
	if err := topic.ValidName(p.WillTopic, c.b.cfg.MaxTopicLevels); err != nil {
		return c.refuse(packet.ErrTopicNameInvalid, nil)
	}
	if topic.IsSys(p.WillTopic) {
		return c.refuse(packet.ErrNotAuthorized, nil)
	}
	if p.WillQoS > c.b.cfg.MaxQoS {
		return c.refuse(packet.ErrQoSNotSupported, nil)
	}
	if p.WillRetain && !c.b.cfg.RetainAvailable {
		return c.refuse(packet.ErrRetainNotSupported, nil)
	}
	return nil
}

// finishAuth runs the Authenticator and accepts the connection.
func (c *conn) finishAuth(st *authState) error {
	if a := c.b.opts.Authenticator; a != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.connectTimeout())
		c.mayBlock() // a webhook, a password hash
		err := a.Authenticate(ctx, c.info, st.connect)
		cancel()
		if err != nil {
			return c.refuse(codeOf(err, packet.ErrNotAuthorized), nil)
		}
		if err := c.checkBinding(st.assigned); err != nil {
			return err
		}
	}
	// The will is authorized once the client is authenticated.
	if p := st.connect; p.WillFlag && c.b.opts.Authorizer != nil {
		if err := c.b.opts.Authorizer.CanPublish(c.info, p.WillTopic, p.WillQoS, p.WillRetain); err != nil {
			return c.refuse(codeOf(err, packet.ErrNotAuthorized), nil)
		}
	}
	err := c.accept(st)
	c.auth = nil
	if st.method != "" {
		st.connect, st.resp = nil, nil
		c.auth = st // kept for re-authentication
	}
	return err
}

func (c *conn) connectTimeout() time.Duration {
	if t := c.b.cfg.ConnectTimeout; t > 0 {
		return t
	}
	return 10 * time.Second
}

// v3Codes maps v5 CONNACK reason codes to 3.1.1 return codes; codes with no
// equivalent close the connection without CONNACK [MQTT-3.2.2-6].
var v3Codes = map[byte]byte{
	0x84: 0x01, 0x85: 0x02, 0x86: 0x04, 0x8C: 0x04, 0x87: 0x05, 0x8A: 0x05,
	0x88: 0x03, 0x89: 0x03, 0x8B: 0x03, 0x97: 0x03, 0x9F: 0x03,
}

// refuse sends a failed CONNACK and returns code to close the connection
// [MQTT-3.2.2-7].
func (c *conn) refuse(code packet.Code, props *packet.Properties) error {
	// The client may still be sending (a will, a pipelined SUBSCRIBE): close
	// gracefully so that a reset does not discard the CONNACK.
	c.sock.Linger()
	c.b.refused(c.info, code)
	ack := &packet.Connack{ReasonCode: code.Value}
	if c.version == packet.V5 {
		if props != nil {
			ack.Props = *props
		}
		c.reasonString(&ack.Props, code)
		c.sendPacket(ack)
		return code
	}
	v3, ok := v3Codes[code.Value]
	if !ok {
		return code
	}
	ack.ReasonCode = v3
	c.sendPacket(ack)
	return code
}

// connectDecodeErr answers a CONNECT that does not decode: an unsupported
// protocol level gets CONNACK 0x01 (0x84 for levels above 5) [MQTT-3.1.2-2].
func (c *conn) connectDecodeErr(body []byte, err error) error {
	code := codeOf(err, packet.ErrMalformedPacket)
	if code != packet.ErrUnsupportedProtocolVersion {
		return code
	}
	if len(body) >= 2 {
		n := int(body[0])<<8 | int(body[1])
		if len(body) > 2+n && body[2+n] > 5 {
			c.version = packet.V5
			return c.refuse(packet.ErrUnsupportedProtocolVersion, nil)
		}
	}
	c.version = packet.V311
	return c.refuse(packet.ErrUnsupportedProtocolVersion, nil)
}

// sessionExpiry is the Session Expiry Interval granted and whether it was
// lowered from what the client asked.
func (c *conn) sessionExpiry(p *packet.Connect) (uint32, bool) {
	max := c.b.maxExpiry()
	if p.Version != packet.V5 {
		if p.CleanStart {
			return 0, false
		}
		return max, false // 3.1.1 persistent sessions last MaxSessionExpiry
	}
	e := p.Props.SessionExpiry
	if e > max {
		return max, true
	}
	return e, false
}

// maxExpiry is MaxSessionExpiry in seconds (expiryNever when unset).
func (b *Broker) maxExpiry() uint32 {
	d := b.cfg.MaxSessionExpiry
	if d <= 0 {
		return expiryNever
	}
	return uint32(min(d/time.Second, expiryNever))
}

// accept attaches the connection to its session and sends CONNACK.
func (c *conn) accept(st *authState) error {
	p := st.connect
	b := c.b
	expiry, capped := c.sessionExpiry(p)
	ka, serverKA := p.KeepAlive, false
	if max := b.cfg.MaxKeepAlive; max > 0 && p.Version == packet.V5 && (ka == 0 || ka > max) {
		ka, serverKA = max, true
	}
	if ka > 0 {
		c.keepAlive = time.Duration(ka) * 1500 * time.Millisecond // [MQTT-3.1.2-24]
	}
	ack := &packet.Connack{}
	if p.Version == packet.V5 {
		c.connackProps(&ack.Props, st, expiry, capped, ka, serverKA)
	}
	w := c.newWill(p)
	// Take a connection slot; the disconnect gives it back.
	if n := b.stats.connected.Add(1); b.cfg.MaxConnections > 0 && n > int64(b.cfg.MaxConnections) {
		b.stats.connected.Add(-1)
		return c.refuse(packet.ErrQuotaExceeded, nil)
	}
	c.gauge = b.connGauge(c.info.Listener, p.Version)
	c.gauge.Add(1)

	if w != nil && b.opts.Registry != nil {
		// Stored before CONNACK, so that the cluster publishes it if this
		// node dies, but not under the client id's lock: a takeover
		// request for the id is not held up by JetStream.
		c.mayBlock()
		select {
		case <-b.putClusterWill(w, expiry, 0):
		case <-time.After(c.connectTimeout()):
		}
	}
	unlock := b.ids.lock(c.info.ClientID)
	owner, err := c.takeoverOwner()
	var reserved reservation
	if err == nil && expiry > 0 {
		reserved, err = b.reserveSession(c.info.ClientID, owner)
	}
	var cl *Claim
	if err == nil && b.opts.Registry != nil {
		if cl, err = c.claim(owner, p.CleanStart); err != nil {
			b.countPersistent(false, false, "", owner, reserved) // gives the slots back
		} else {
			owner = cl.Owner
		}
	}
	var crev uint64 // the revision of a new session's record
	rhold := false  // a hold of the log's reader for the session taken below
	if err == nil && b.cstore != nil {
		takeover := expiry > 0 && !p.CleanStart && c.localUnheld()
		if crev, err = c.cconnect(p.CleanStart, expiry, owner, cl); err == nil && takeover {
			rhold, err = c.resumeHold()
		}
		if err != nil {
			b.countPersistent(false, false, "", owner, reserved)
		}
	}
	if err != nil {
		unlock()
		b.dropClusterWill(w)
		b.releaseSlot(c)
		return c.refuse(codeOf(err, packet.ErrNotAuthorized), nil)
	}
	s, present := b.takeSession(c.info.ClientID, p.CleanStart, p.Version)
	if sm := b.seams.Load(); sm != nil && sm.tookSession != nil {
		sm.tookSession(s)
	}
	s.mu.Lock()
	for s.gone {
		// It ended after takeSession looked (an expiry timer that had
		// fired, a close of a session without expiry): start anew.
		s.mu.Unlock()
		s, present = b.takeSession(c.info.ClientID, p.CleanStart, p.Version)
		s.mu.Lock()
	}
	wasPersistent, wasOwner := s.persistent, s.owner
	s.conn, s.info, s.version = c, c.info, p.Version
	s.owner, s.ownerKnown = owner, true
	if cl != nil {
		s.claim = cl.Token
	}
	if crev != 0 {
		s.csLocked().rev = crev
	}
	s.expiry, s.persistent = expiry, expiry > 0
	if rhold && s.persistent && !s.rhold {
		s.rhold, rhold = true, false
	}
	b.countPersistent(wasPersistent, s.persistent, wasOwner, owner, reserved)
	s.cancelTimersLocked(wasPersistent)
	s.connWill = w
	s.online.Store(true)
	c.sess = s
	c.state = stateConnected
	c.wmu.Lock()
	c.wver = c.version
	c.wmu.Unlock()
	ack.SessionPresent = present // [MQTT-3.2.2-2,3]
	if p.Version == packet.V5 {
		s.limitsPropsLocked(&p.Props, &ack.Props)
	}
	c.sendPacket(ack)
	if s.persistent {
		s.saveLocked()
	} else if wasPersistent {
		b.unstoreSessionLocked(s)
		s.forgetRecordsLocked(s.messagesLocked())
	}
	if present {
		s.recheckLocked(c.info)
	}
	s.resumeLocked(c)
	s.mu.Unlock()
	unlock()
	if rhold {
		b.releaseReader()
	}

	c.setReadTimeout(c.keepAlive)
	b.stats.connects.Add(1)
	for _, h := range b.connHooks {
		h.OnConnect(c.info, present)
	}
	return nil
}

// connackProps fills the v5 CONNACK properties [MQTT-3.2.2.3].
func (c *conn) connackProps(pr *packet.Properties, st *authState, expiry uint32, capped bool, ka uint16, serverKA bool) {
	cfg := &c.b.cfg
	if cfg.ReceiveMaximum > 0 && cfg.ReceiveMaximum < 65535 {
		pr.ReceiveMaximum = cfg.ReceiveMaximum
		pr.Set(packet.PropReceiveMaximum)
	}
	if cfg.MaxQoS < 2 {
		pr.MaximumQoS = cfg.MaxQoS
		pr.Set(packet.PropMaximumQoS)
	}
	if !cfg.RetainAvailable {
		pr.RetainAvailable = 0
		pr.Set(packet.PropRetainAvailable)
	}
	if cfg.MaxPacketSize > 0 {
		pr.MaximumPacketSize = cfg.MaxPacketSize
		pr.Set(packet.PropMaximumPacketSize)
	}
	if cfg.MaxTopicAlias > 0 {
		pr.TopicAliasMaximum = cfg.MaxTopicAlias
		pr.Set(packet.PropTopicAliasMaximum)
	}
	for _, f := range []struct {
		on bool
		id packet.PropID
		v  *byte
	}{{cfg.WildcardSubscriptions, packet.PropWildcardSubAvailable, &pr.WildcardSubAvailable},
		{cfg.SubscriptionIdentifiers, packet.PropSubIDAvailable, &pr.SubIDAvailable},
		{cfg.SharedSubscriptions, packet.PropSharedSubAvailable, &pr.SharedSubAvailable}} {
		if !f.on {
			*f.v = 0
			pr.Set(f.id)
		}
	}
	if st.assigned {
		pr.AssignedClientID = c.info.ClientID // [MQTT-3.2.2-16]
		pr.Set(packet.PropAssignedClientID)
	}
	if capped {
		pr.SessionExpiry = expiry
		pr.Set(packet.PropSessionExpiry)
	}
	if serverKA {
		pr.ServerKeepAlive = ka // [MQTT-3.2.2-21]
		pr.Set(packet.PropServerKeepAlive)
	}
	if st.connect.Props.Has(packet.PropRequestResponseInfo) && st.connect.Props.RequestResponseInfo == 1 {
		pr.ResponseInfo = "response/" + c.info.ClientID
		pr.Set(packet.PropResponseInfo)
	}
	if st.method != "" {
		pr.AuthMethod = st.method
		pr.Set(packet.PropAuthMethod)
		if st.resp != nil {
			pr.AuthData = st.resp
			pr.Set(packet.PropAuthData)
		}
	}
}

// takeSession finds or makes the session for id. A live connection on it is
// taken over [MQTT-3.1.4-3]; clean start discards the old session
// [MQTT-3.1.2-4], otherwise it resumes [MQTT-3.1.2-5]. The lock of id is held.
func (b *Broker) takeSession(id string, clean bool, v packet.Version) (*session, bool) {
	b.mu.Lock()
	old := b.sessions[id]
	b.mu.Unlock()
	if old != nil {
		old.mu.Lock()
	}
	if old != nil && old.gone { // ending: its end deletes it from b.sessions
		old.mu.Unlock()
		old = nil
	}
	if old != nil {
		oc, ow, pw := old.conn, old.connWill, old.pendingWill
		old.conn, old.connWill, old.pendingWill = nil, nil, nil
		wt, et := old.willTimer, old.expTimer
		old.willTimer, old.expTimer = nil, nil
		old.claim = 0 // the connecting client claimed the id anew
		old.online.Store(false)
		persistent := old.persistent
		old.mu.Unlock()
		b.stopTimer(wt)
		b.stopTimer(et)
		if oc != nil {
			oc.kick(packet.ErrSessionTakenOver)
		}
		// The old connection's will goes unless the session resumes and the
		// will is delayed [MQTT-3.1.3-9].
		if ow != nil && (clean || ow.delay == 0) {
			b.publishWill(ow)
		} else {
			b.dropClusterWill(ow)
		}
		if clean {
			b.endSession(old, pw)
			old = nil
		} else if pw != nil {
			b.dropClusterWill(pw)
			if persistent {
				b.unstoreWill(id) // reconnected within the will delay [MQTT-3.1.3-9]
			}
		}
	}
	if old != nil {
		return old, true
	}
	s := newSession(b, id)
	b.mu.Lock()
	b.sessions[id] = s
	b.mu.Unlock()
	return s, false
}

// onDisconnect handles a client's DISCONNECT: 0x00 suppresses the will
// [MQTT-3.1.2-10], 0x04 keeps it; v5 may change the session expiry, but not
// from zero [MQTT-3.14.2-2].
func (c *conn) onDisconnect(p *packet.Disconnect) error {
	if c.state != stateConnected {
		return errNormal
	}
	if c.version == packet.V5 && p.Props.Has(packet.PropSessionExpiry) {
		s := c.sess
		s.mu.Lock()
		if s.expiry == 0 && p.Props.SessionExpiry != 0 {
			s.mu.Unlock()
			return c.fail(packet.ErrProtocolError)
		}
		s.expiry = min(p.Props.SessionExpiry, c.b.maxExpiry())
		s.mu.Unlock()
	}
	c.normal = c.version != packet.V5 || p.ReasonCode != packet.DisconnectWithWill.Value
	return errNormal
}

var errNormal = &connError{"client disconnected"}
