package broker

import (
	"context"
	"errors"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/culexmq/culex/internal/store"
)

// Registry is the cluster's record of which node holds each client id's
// session, and of the wills of the clients connected to each node
// (docs/cluster.md, "One session per client id"). A node without a cluster
// has none, and CONNECT takes its local path only.
type Registry interface {
	// Claim records that this node holds c.ClientID's session from now on.
	// It is called at CONNECT, after the node's own ownership check, with
	// the client id's lock held. When another live node holds the id,
	// Claim applies c.Decide to that session's owner (refusing the client
	// with Decide's error), makes that node end the session (its
	// connection gets DISCONNECT 0x8E: Broker.Supersede), and sets c.Owner
	// to the owner the session keeps. It sets c.Token, which Release and
	// Supersede name the claim by. An error other than Decide's refuses
	// the client with CONNACK 0x88 (server unavailable).
	Claim(ctx context.Context, c *Claim) error
	// Release forgets the claim named token, unless a later claim (of any
	// node) replaced it. It must not block.
	Release(clientID string, token uint64)
	// PutWill stores the will of a connected client (w.Deadline zero) or
	// of one that left and whose will waits out its delay, so that another
	// node publishes it if this one dies. It returns the will's token at
	// once (0 when it cannot be stored) and stores it in the background:
	// stored is closed once the attempt ended. TakeWill and DropWill of a
	// client id come after its PutWills. It must not block.
	PutWill(w *ClusterWill) (token uint64, stored <-chan struct{})
	// TakeWill removes the will named token and calls publish (on another
	// goroutine) when this node may publish it: not when another node took
	// it (this node was thought dead). A will whose record a later will of
	// this node replaced is published. It must not block.
	TakeWill(clientID string, token uint64, publish func())
	// DropWill removes the will named token (a will that is cancelled). It
	// must not block.
	DropWill(clientID string, token uint64)
}

// Claim is a CONNECT's claim on its client id (Registry.Claim).
type Claim struct {
	ClientID string
	// Owner is the owner the session keeps as this node decided it; Claim
	// replaces it when the session was another node's.
	Owner string
	// Clean is the CONNECT's clean start: the will of the connection taken
	// over is published (or, delayed, cancelled) as on one node.
	Clean bool
	// Decide applies this node's ownership rules to a session that
	// belongs to owner on another node: the owner it keeps, or the error
	// that refuses the client (packet.ErrNotAuthorized).
	Decide func(owner string) (string, error)
	// Token names the claim; set by Claim.
	Token uint64
	// Prev is the claim this one replaced, set by Claim (zero when the
	// id was free): a session this node still holds for the id is
	// current only when Prev is its own claim (Here, with its Token).
	Prev ClaimHolder
}

// ClaimHolder is the node that held a client id: its name, its run
// (incarnation), the claim's token, and whether it is this node's run.
type ClaimHolder struct {
	Node, Inc string
	Token     uint64
	Here      bool
}

// ClusterWill is a will as the Registry stores it.
type ClusterWill struct {
	ClientID string
	// Delay is the Will Delay Interval, capped by the Session Expiry
	// Interval: how long after its node dies the will is published.
	Delay time.Duration
	// Deadline, when not zero, is when the will is due (Unix
	// nanoseconds): the client has gone and the will waits out its delay.
	Deadline int64
	// Data is the will and its client's identity, for Broker.FireWill.
	Data []byte
}

// RetainedReplica is where a node writes the retained messages its clients
// set, for every node to read (docs/cluster.md, "Retained messages"). The
// writes of one node must keep their order; neither call may block.
type RetainedReplica interface {
	SetRetained(m *Message)
	DeleteRetained(topic string)
}

// Supersede ends the session of clientID whose claim is token, because a
// client took the id over on another node: its connection gets DISCONNECT
// 0x8E [MQTT-3.1.4-3], its will is published when clean (the new
// connection's clean start) or when it has no delay, and cancelled
// otherwise [MQTT-3.1.3-9], and the session ends here. It reports whether
// it found that claim; a later claim made on this node is left alone.
func (b *Broker) Supersede(clientID string, token uint64, clean bool) bool {
	return b.supersede(clientID, func(claim uint64) bool { return claim == token }, clean, true)
}

// SupersedeBefore ends, as Supersede does, the session of clientID if it
// holds a claim older than rev, a claim of another node: the Registry saw
// that claim replace this node's, whether or not the takeover request
// reached it. It does not block: the session ends on another goroutine.
func (b *Broker) SupersedeBefore(clientID string, rev uint64, clean bool) {
	older := func(claim uint64) bool { return claim != 0 && claim < rev }
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	claim := s.claim
	s.mu.Unlock()
	// A CONNECT claiming here holds the id's lock and has not set its
	// claim yet: the locked check below sees it once it has. A persistent
	// session's final record is saved as for a takeover request (which
	// then finds the session gone): a compare-and-set on its revision,
	// refused if the claim's node loaded the record already.
	if claim == 0 || older(claim) {
		go b.supersede(clientID, older, clean, true)
	}
}

// supersede ends the session of clientID if its claim matches.
// In a cluster, with save, a persistent session's final record is saved
// before it returns (handOff): the takeover's answer waits for it.
func (b *Broker) supersede(clientID string, match func(claim uint64) bool, clean, save bool) bool {
	unlock := b.ids.lock(clientID)
	defer unlock()
	return b.endTaken(clientID, match, clean, save)
}

// endTaken is supersede with the client id's lock held.
func (b *Broker) endTaken(clientID string, match func(claim uint64) bool, clean, save bool) bool {
	b.mu.Lock()
	s := b.sessions[clientID]
	b.mu.Unlock()
	if s == nil {
		return false
	}
	s.mu.Lock()
	if s.gone || !match(s.claim) {
		s.mu.Unlock()
		return false
	}
	oc, ow, pw := s.conn, s.connWill, s.pendingWill
	s.conn, s.connWill, s.pendingWill = nil, nil, nil
	wt := s.willTimer
	s.willTimer = nil
	s.claim = 0 // the record is the new claim's: nothing to release
	s.online.Store(false)
	s.mu.Unlock()
	b.stopTimer(wt)
	if oc != nil {
		oc.kick(packet.ErrSessionTakenOver)
	}
	if ow != nil {
		if clean || ow.delay == 0 {
			b.publishWill(ow)
		} else {
			b.dropClusterWill(ow)
		}
	}
	if pw != nil && !clean {
		b.dropClusterWill(pw) // reconnected within the delay [MQTT-3.1.3-9]
		pw = nil
	}
	if b.cstore != nil && !clean && b.handOff(s, pw, save) {
		return true // the session moved; its record is the other node's now
	}
	b.endSession(s, pw)
	return true
}

// claim runs Registry.Claim for a CONNECT whose session keeps owner.
func (c *conn) claim(owner string, clean bool) (*Claim, error) {
	cl := &Claim{ClientID: c.info.ClientID, Owner: owner, Clean: clean, Decide: c.keepOwner}
	ctx, cancel := context.WithTimeout(context.Background(), c.connectTimeout())
	defer cancel()
	c.mayBlock()
	if err := c.b.opts.Registry.Claim(ctx, cl); err != nil {
		var code packet.Code
		if !errors.As(err, &code) {
			c.b.log.Warn("client id claim failed: the cluster registry is unreachable",
				"client_id", c.info.ClientID, "err", err)
			return nil, packet.ErrServerUnavailable
		}
		return nil, err
	}
	return cl, nil
}

// putClusterWill stores w in the Registry, for a session expiring after
// expiry seconds, and returns when the attempt ended is signalled.
func (b *Broker) putClusterWill(w *will, expiry uint32, deadline int64) <-chan struct{} {
	d := time.Duration(w.delay) * time.Second
	if expiry != expiryNever {
		d = min(d, time.Duration(expiry)*time.Second)
	}
	rev, stored := b.opts.Registry.PutWill(&ClusterWill{ClientID: w.msg.Origin, Delay: d, Deadline: deadline,
		Data: encodeClusterWill(w)})
	if rev != 0 {
		w.crev = rev
	}
	return stored
}

// dropClusterWill removes a cancelled will from the Registry.
func (b *Broker) dropClusterWill(w *will) {
	if w != nil && w.crev != 0 {
		b.opts.Registry.DropWill(w.msg.Origin, w.crev)
	}
}

// encodeClusterWill is w with its client's identity: username, owner and
// the authenticator's state, which the Authorizer checks when the will
// fires on another node.
func encodeClusterWill(w *will) []byte {
	var user, owner string
	var st string
	if w.info != nil {
		user, owner, st = w.info.Username, w.info.Owner, string(w.info.AuthState)
	}
	b := appendString(nil, user)
	b = appendString(b, owner)
	b = appendString(b, st)
	return append(b, encodeWill(w)...)
}

// FireWill publishes a will that ClusterWill.Data holds, as its client's
// message: the node that held the client died and this node was elected
// to publish it.
func (b *Broker) FireWill(data []byte) error {
	r := &reader{b: data}
	info := &ClientInfo{Username: r.string(), Owner: r.string()}
	if st := r.string(); st != "" {
		info.AuthState = []byte(st)
	}
	if r.err != nil {
		return errRecord
	}
	w, err := decodeWill(r.b)
	if err != nil {
		return err
	}
	info.ClientID = w.msg.Origin
	w.info = info
	b.publishWill(w)
	return nil
}

// EncodeMessage is m as the cluster stores and forwards it: topic, QoS,
// retain, properties, payload, origin and expiry deadline.
func EncodeMessage(m *Message) []byte { return encodeMessage(m) }

// DecodeMessage reverses EncodeMessage.
func DecodeMessage(v []byte) (*Message, error) {
	r := &reader{b: v}
	m := r.message()
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// ApplyRetained makes m the retained message of its topic on this node, or
// clears the topic's when m's payload is empty: a change another node (or
// this one) wrote to the RetainedReplica. It is not written back, and
// counts towards the retained caps without being refused by them (the
// node that wrote it checked them).
func (b *Broker) ApplyRetained(m *Message) {
	if topic.IsSys(m.Topic) || m.expired(time.Now().UnixNano()) && len(m.Payload) > 0 {
		return
	}
	b.retMu.Lock()
	defer b.retMu.Unlock()
	b.storeRetainedLocked(m, nil)
}

// PruneRetained clears the retained messages this node holds (restored
// from its store) whose topics keep does not want: the RetainedReplica's
// first full read tells what the cluster still holds.
func (b *Broker) PruneRetained(keep func(topic string) bool) {
	var gone []string
	b.retMu.Lock()
	defer b.retMu.Unlock()
	b.retained.Range(func(t string, _ *Message) bool {
		if !topic.IsSys(t) && !keep(t) {
			gone = append(gone, t)
		}
		return true
	})
	for _, t := range gone {
		b.storeRetainedLocked(&Message{Topic: t}, nil)
	}
}

// storeRetainedLocked sets (or, with an empty payload, clears) the retained
// message of m's topic in the index and the node's store, without the caps.
func (b *Broker) storeRetainedLocked(m *Message, w *storeWait) {
	old, had := b.retained.Get(m.Topic)
	if len(m.Payload) == 0 {
		if b.retained.Delete(m.Topic) {
			b.retUse.n--
			b.retUse.bytes -= retainedSize(old)
			b.apply([]store.Op{{Kind: store.Delete, Bucket: store.Retained, Key: m.Topic}}, w)
		}
		return
	}
	b.retained.Set(m.Topic, m)
	b.retUse.addLocked(m, old, had)
	b.apply([]store.Op{{Kind: store.Put, Bucket: store.Retained, Key: m.Topic, Value: encodeMessage(m)}}, w)
}
