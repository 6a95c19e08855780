package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

// Persistent sessions of a cluster (Options.SessionStore; docs/cluster.md,
// "Persistent sessions"). The session and the QoS 1 and 2 messages it is
// owed live in the SessionStore, not in the node's Store:
//
//   - A QoS 1/2 publish that a persistent session of the cluster subscribes
//     to is written once to the store's log before the publisher is
//     acknowledged (storeInLog); the copies routed to other nodes say so
//     (Message.Stored) and every node gives it to its persistent sessions
//     from its reader of the log (fromLog), never from the routing pass.
//     A copy for a persistent session that was not stored (the publisher's
//     node did not know of the subscription yet, a shared subscription's
//     turn) is written for that session alone (StoreFor) before it is
//     accepted (viaLogLocked).
//   - Each session keeps a cursor into the log: every message up to it that
//     the session was owed is done. Its record (subscriptions, expiry,
//     cursor, in-flight packet ids and QoS 2 states, the messages still
//     queued up to the reader's position, inbound QoS 2 packet ids) is
//     saved lazily for QoS 1 (csaveDelay), and before a QoS 2 PUBLISH or
//     PUBREL is sent, a SUBACK or UNSUBACK, a CONNACK of a new session,
//     and an inbound QoS 2 PUBREC or PUBCOMP.
//   - A session resumes on any node: CONNECT loads its record once the
//     client id is claimed (the node that held it saved its final record
//     before it confirmed the takeover: handOff), re-sends what was in
//     flight, and reads what it missed from the log (Backlog) in front of
//     what the reader delivers from then on.
//   - Saves are compare-and-sets on the record's revision: Load's write
//     fences the node that held the session, whose later Saves fail
//     (ErrSessionMoved); that node then ends the session without saving
//     (lost), so a late Save never replaces the new holder's record.

// csaveDelay is how long a session's record may lag behind its QoS 1
// deliveries: at most one Save per session per csaveDelay.
const csaveDelay = 100 * time.Millisecond

// csaveRetry is how long a failed Save waits before it is tried again.
const csaveRetry = time.Second

// handOffWait bounds how long a takeover waits for the final record of the
// session it moves: less than the registry's takeover request (2 s). A
// Save answered later is harmless: it lands before the new node's Load
// (which reads it), or is refused after it (fenced).
const handOffWait = 1500 * time.Millisecond

// maxLoading bounds the CONNECTs of a node that load, make or delete a
// persistent session's record in the SessionStore at once (the record,
// its backlog). After a node dies its clients come back all together: a
// CONNECT per client at once queued the requests of all of them at the
// cluster's leaders, each slower than the CONNECT's deadline, and the
// clients were refused with nothing done. The others wait for a slot,
// within the CONNECT's deadline.
const maxLoading = 64

// loadSlots are the CONNECTs allowed to use the SessionStore at once.
type loadSlots struct {
	ch      chan struct{} // one token per CONNECT using the store
	waiting atomic.Int64  // CONNECTs waiting for a token
}

// acquire waits for a slot until ctx ends.
func (l *loadSlots) acquire(ctx context.Context) error {
	select {
	case l.ch <- struct{}{}:
		return nil
	default:
	}
	l.waiting.Add(1)
	defer l.waiting.Add(-1)
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *loadSlots) release() { <-l.ch }

// errNoStore is the error of a SessionStore call that did not answer.
var errNoStore = errors.New("broker: session store did not answer")

// clusterLog is the node's side of the log: the reader's progress.
type clusterLog struct {
	// mu orders the reader's deliveries with sessions that start reading
	// (cresume): a session registered under it gets every message after
	// the reader's position from the reader, and the ones before from
	// Backlog.
	mu sync.Mutex
	// last is the last sequence the reader delivered (set once its copies
	// are in the sessions' queues).
	last atomic.Uint64
	// saves are the Saves not answered yet: Shutdown waits for them.
	saves sync.WaitGroup
}

// csess is a persistent session's state in the log.
type csess struct {
	// cursor: every message up to it the session was owed is done.
	cursor uint64
	// from: messages up to it come from Backlog (or were done before the
	// session came here); the reader gives the session only later ones.
	from uint64
	// open are the session's messages of the log not done yet (queued or
	// in flight), by sequence.
	open map[uint64]*outMsg
	// upto and pending, from the record the session resumed from: of the
	// messages up to upto, only those in pending (queued there) are still
	// owed; the others were done. A pending message leaves the set once
	// delivered here, or once the reader passed it (no longer matching).
	upto    uint64
	pending map[uint64]struct{}
	// loading: Backlog is being read; the reader's copies wait in live
	// (liveBytes: their size), within the session's queue limits.
	loading   bool
	live      []outMsg
	liveBytes int
	// dirty: the record changed since the last Save; timer saves it.
	dirty bool
	timer *time.Timer
	// retry saves the record again after a Save failed (csaveRetry).
	retry *time.Timer
	// rev is the record's revision (Load's, then each Save's): the next
	// Save's condition. saving: a Save is in flight; next wait for the
	// one made after it.
	rev    uint64
	saving bool
	next   []func(error)
	// del: the session ended with a Save in flight; its record is
	// deleted once the Save is answered, at the revision it gave.
	del bool
}

func (s *session) csLocked() *csess {
	if s.cs == nil {
		s.cs = &csess{}
	}
	return s.cs
}

// wants says whether the reader's message seq is for the session: after
// from (earlier ones come from Backlog), and owed.
func (cs *csess) wants(seq uint64) bool { return seq > cs.from && cs.owed(seq) }

// owed says whether message seq (matching the session) is owed to it:
// after the cursor, not in flight or queued already (a resumed in-flight
// message), not done before the session moved here. It takes seq out of
// pending: the caller delivers it or counts it dropped.
func (cs *csess) owed(seq uint64) bool {
	if seq <= cs.cursor {
		return false
	}
	if _, ok := cs.open[seq]; ok {
		return false
	}
	if seq <= cs.upto {
		if _, ok := cs.pending[seq]; !ok {
			return false
		}
		delete(cs.pending, seq)
	}
	return true
}

// holdReader takes a hold of the node's reader of the log when the
// SessionStore is a ReaderHolder (ReaderHolder.HoldReader): no lock that
// fromLog takes may be held.
func (b *Broker) holdReader(ctx context.Context) error {
	if rh, ok := b.cstore.(ReaderHolder); ok {
		return rh.HoldReader(ctx)
	}
	return nil
}

// releaseReader gives back a hold of holdReader.
func (b *Broker) releaseReader() {
	if rh, ok := b.cstore.(ReaderHolder); ok {
		rh.ReleaseReader()
	}
}

// subscribeHold makes the persistent session of c, about to subscribe,
// hold the node's reader of the log, if it does not yet: from the SUBACK
// on, every message stored for its filters reaches it from the reader. It
// reports false when the reader cannot be held (the SUBSCRIBE is refused).
func (c *conn) subscribeHold() bool {
	s := c.sess
	s.mu.Lock()
	need := s.persistent && !s.rhold && !s.gone
	s.mu.Unlock()
	if !need {
		return true
	}
	c.mayBlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.connectTimeout())
	defer cancel()
	if err := c.b.holdReader(ctx); err != nil {
		c.b.log.Warn("cluster: the log's reader not started; the SUBSCRIBE is refused", "client_id", s.id, "err", err)
		return false
	}
	s.mu.Lock()
	took := s.persistent && !s.rhold && !s.gone
	s.rhold = s.rhold || took
	s.mu.Unlock()
	if !took {
		c.b.releaseReader()
	}
	return true
}

// localUnheld says whether this node has a session of the connecting
// client that does not hold the log's reader: a persistent CONNECT that
// resumes it (one that was not persistent may have subscriptions) takes
// a hold for it (resumeHold). A session cconnect loads from its record
// takes its own. The client id's lock is held.
func (c *conn) localUnheld() bool {
	b := c.b
	b.mu.Lock()
	local := b.sessions[c.info.ClientID]
	b.mu.Unlock()
	if local == nil {
		return false
	}
	local.mu.Lock()
	defer local.mu.Unlock()
	return !local.gone && !local.rhold
}

// resumeHold takes a hold of the node's reader of the log for a
// persistent CONNECT that resumes a session of this node (localUnheld):
// the CONNECT gives it to the session, or back.
func (c *conn) resumeHold() (bool, error) {
	c.mayBlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.connectTimeout())
	defer cancel()
	if err := c.b.holdReader(ctx); err != nil {
		c.b.log.Warn("cluster: the log's reader not started; the client is refused", "client_id", c.info.ClientID, "err", err)
		return false, packet.ErrServerUnavailable
	}
	return true, nil
}

// startLog starts the node's reader of the log (Start).
func (b *Broker) startLog() {
	if b.cstore != nil {
		b.cstore.Deliver(b.fromLog)
	}
}

// waitSaves waits for the Saves not answered yet (the final records of
// the sessions whose clients Shutdown disconnected), or for ctx.
func (b *Broker) waitSaves(ctx context.Context) error {
	if b.cstore == nil {
		return nil
	}
	done := make(chan struct{})
	go func() { b.clog.saves.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker: shutdown: persistent sessions not saved: %w", ctx.Err())
	}
}

// storeInLog writes a QoS 1/2 message published on this node to the log
// when a persistent session of the cluster subscribes to it; w waits for
// the write, and the message says it is stored to the nodes it is routed
// to. A failed write fails the publisher's acknowledgement (0x80).
func (b *Broker) storeInLog(m *Message, w *storeWait) {
	if m.QoS == 0 || m.Forwarded || m.Local || m.Share != nil || !b.cstore.Persistent(m.Topic) {
		return
	}
	m.Stored = true
	if w != nil {
		w.n.Add(1)
	}
	b.cstore.Store(m, func(_ uint64, err error) {
		if err != nil {
			b.log.Warn("cluster: message not stored for persistent sessions; the publisher is refused",
				"topic", m.Topic, "err", err)
			err = packet.ErrUnspecified
		}
		if w != nil {
			w.done(err)
		}
	})
}

// viaLogLocked takes a routed copy for a persistent session of the
// cluster: a stored message comes from the reader (nothing to do here); a
// QoS 1/2 copy not stored is written for the session alone, w waiting for
// it, and comes from the reader too. It reports whether it took the copy
// (false: QoS 0, delivered as usual). s.mu is held.
func (b *Broker) viaLogLocked(s *session, om *outMsg, w *storeWait) bool {
	if om.msg.Stored && om.group == "" {
		return true
	}
	if om.qos == 0 {
		return false
	}
	if w != nil {
		w.n.Add(1)
	}
	m := om.msg
	b.cstore.StoreFor(s.id, m, func(_ uint64, err error) {
		if err != nil {
			b.log.Warn("cluster: message not stored for a persistent session; the publisher is refused",
				"client_id", s.id, "topic", m.Topic, "err", err)
			err = packet.ErrUnspecified
		}
		if w != nil {
			w.done(err)
		}
	})
	return true
}

// fromLog is the node's reader of the log (SessionStore.Deliver): it
// gives each message to the persistent sessions of this node it is for,
// connected or not, as a routing pass would.
func (b *Broker) fromLog(seq uint64, clientID string, m *Message) {
	b.clog.mu.Lock()
	defer b.clog.mu.Unlock()
	if m == nil {
		// The reader starts at seq: nothing before was for a session of
		// this node (none held it), so their cursors may pass it.
		if seq > b.clog.last.Load() {
			b.clog.last.Store(seq)
		}
		return
	}
	defer b.clog.last.Store(seq)
	sc := scratches.Get().(*scratch)
	defer func() { sc.reset(); scratches.Put(sc) }()
	sc.now = time.Now().UnixNano()
	if clientID != "" {
		b.mu.Lock()
		s := b.sessions[clientID]
		b.mu.Unlock()
		if s != nil {
			s.mu.Lock()
			matchSession(s, m, sc, true)
			s.mu.Unlock()
		}
	} else {
		b.subs.Match(m.Topic, func(_ string, s *session, o subOpts) {
			if o.NoLocal && m.Origin != "" && s.id == m.Origin {
				return // [MQTT-3.8.3-3]
			}
			sc.add(s, o)
		})
	}
	for i := range sc.targets {
		b.logDeliver(&sc.targets[i], seq, m, sc)
	}
}

// matchSession adds s's subscriptions that match m to sc: its plain ones
// merged, or else, for a message stored for s alone (forS), the first
// shared one. A message stored for all (Store) is never a shared
// subscription's: the group's copies are their members' StoreFor ones.
// s.mu is held.
func matchSession(s *session, m *Message, sc *scratch, forS bool) {
	var share *target
	for f, o := range s.subs {
		group, inner, shared, _ := topic.ParseShared(f)
		if !shared {
			inner = f
		}
		if !topic.Match(inner, m.Topic) {
			continue
		}
		if shared {
			if forS && share == nil {
				share = &target{s: s, qos: o.QoS, id0: o.ID, group: group, filter: inner}
			}
			continue
		}
		if o.NoLocal && m.Origin != "" && s.id == m.Origin {
			continue
		}
		sc.add(s, o)
	}
	if len(sc.targets) == 0 && share != nil {
		sc.targets = append(sc.targets, *share)
	}
}

// logDeliver gives the reader's message seq to t's session if it is a
// persistent session waiting for it.
func (b *Broker) logDeliver(t *target, seq uint64, m *Message, sc *scratch) {
	s := t.s
	s.mu.Lock()
	defer s.unlock()
	if !s.persistent || s.gone || !s.csLocked().wants(seq) {
		return
	}
	s.takeLocked(t, seq, m, sc, sc.now)
}

// takeLocked gives the log's message seq to s as t subscribes to it: it
// is dropped and counted when expired or not authorized for the client;
// else delivered, or, while s reads its backlog, kept for after it (sc
// not nil: the reader's; nil: the backlog's).
func (s *session) takeLocked(t *target, seq uint64, m *Message, sc *scratch, now int64) {
	om := outMsg{msg: m, qos: min(m.QoS, t.qos), retain: m.Retain && t.rap, group: t.group, filter: t.filter, lseq: seq}
	if t.ids != nil {
		om.subIDs = slices.Clone(t.ids)
	} else if t.id0 != 0 {
		om.subIDs = []uint32{t.id0}
	}
	az := s.b.opts.Authorizer
	switch {
	case m.expired(now):
		s.b.drop(s.id, m, DropExpired)
	case az != nil && s.info != nil && az.CanReceive(s.info, m) != nil:
		s.b.drop(s.id, m, DropNotAuthorized)
	case sc != nil && s.cs.loading:
		s.liveLocked(om)
	default:
		s.deliverLocked(om, sc, nil, now)
	}
}

// liveLocked keeps the reader's message om, while the session reads its
// backlog, for after it. What waits is bounded by the session's queue
// limits with its overflow policy, as it is queued behind the backlog
// anyway: over them drop_new drops om, drop_oldest the oldest waiting,
// counted queue_full (done: the cursor passes it).
func (s *session) liveLocked(om outMsg) {
	cs := s.cs
	n := om.size()
	msgs, bytes := s.queueLimitsLocked()
	for len(cs.live) > 0 && (msgs > 0 && len(cs.live) >= msgs || bytes > 0 && cs.liveBytes+n > bytes) {
		if s.b.cfg.QueueOverflow != "drop_oldest" {
			s.b.drop(s.id, om.msg, DropQueueFull)
			return
		}
		old := cs.live[0]
		cs.live[0] = outMsg{}
		cs.live = cs.live[1:]
		cs.liveBytes -= old.size()
		s.b.drop(s.id, old.msg, DropQueueFull)
	}
	cs.live = append(cs.live, om)
	cs.liveBytes += n
}

// ctrackLocked records om, a message of the log, as owed to the session
// until it is done (cdoneLocked), and marks the record to be saved.
func (s *session) ctrackLocked(om *outMsg) {
	if om.lseq == 0 {
		return // not from the log (a retained message at SUBSCRIBE)
	}
	cs := s.csLocked()
	om.stored = true
	if cs.open == nil {
		cs.open = make(map[uint64]*outMsg)
	}
	cs.open[om.lseq] = om
	s.cdirtyLocked()
}

// cdoneLocked records om as done: acknowledged, or dropped and counted.
func (s *session) cdoneLocked(om *outMsg) {
	om.stored = false
	if om.lseq == 0 {
		return
	}
	delete(s.csLocked().open, om.lseq)
	s.cdirtyLocked()
}

// cursorLocked advances the cursor as far as the session's messages allow:
// to just before the oldest one not done, or, with none, to the reader's
// position (every message it delivered that was for the session is open
// or done).
func (s *session) cursorLocked() uint64 {
	cs := s.csLocked()
	if cs.loading {
		return cs.cursor
	}
	last := s.b.clog.last.Load()
	c := max(last, cs.from)
	for seq := range cs.pending {
		if seq <= last {
			delete(cs.pending, seq) // passed by the reader: not owed any more
			continue
		}
		c = min(c, seq-1)
	}
	for seq := range cs.open {
		c = min(c, seq-1)
	}
	cs.cursor = max(cs.cursor, c)
	return cs.cursor
}

// cdirtyLocked schedules a lazy Save of the record.
func (s *session) cdirtyLocked() {
	cs := s.csLocked()
	cs.dirty = true
	if cs.timer != nil || s.gone || !s.persistent || cs.loading {
		return
	}
	cs.timer = s.b.afterFunc(csaveDelay, func() {
		s.mu.Lock()
		defer s.unlock()
		s.cs.timer = nil
		if s.cs.dirty {
			s.csaveLocked(nil)
		}
	})
}

// csaveLocked saves the session's record now; then, if not nil, gets the
// result once the store answered (on the store's goroutine). A failed
// Save is tried again after csaveRetry.
//
// Saves are compare-and-sets on the record's revision (cs.rev, from Load
// or the last Save): one is in flight at a time, and the ones asked for
// meanwhile are made as one once it is answered, with its revision. A
// Save refused because the record changed (ErrSessionMoved: another node
// loaded it, a sweep deleted it) means the session is no longer this
// node's: it ends here (lost), without saving.
func (s *session) csaveLocked(then func(error)) {
	if s.gone || !s.persistent {
		if then != nil {
			go then(nil)
		}
		return
	}
	cs := s.csLocked()
	if cs.saving {
		cs.dirty = true
		if then != nil {
			cs.next = append(cs.next, then)
		}
		return
	}
	var thens []func(error)
	if then != nil {
		thens = []func(error){then}
	}
	s.csendLocked(thens)
}

// csendLocked makes the Save for thens.
func (s *session) csendLocked(thens []func(error)) {
	rec := s.crecordLocked()
	rec.Rev = s.cs.rev
	s.cs.dirty, s.cs.saving = false, true
	s.b.clog.saves.Add(1)
	// A store that is closed answers at once, on this goroutine, which
	// holds s.mu: then the answer is handled on another one.
	var inSave atomic.Bool
	inSave.Store(true)
	defer inSave.Store(false)
	s.b.cstore.Save(rec, func(rev uint64, err error) {
		if inSave.Load() {
			go s.saved(rev, err, thens)
			return
		}
		s.saved(rev, err, thens)
	})
}

// saved handles the answer to a Save (s.mu not held): a failure is
// logged and the record saved again after csaveRetry; a record that
// changed ends the session here (lost); thens get the result, and the
// Saves asked for meanwhile are made.
func (s *session) saved(rev uint64, err error, thens []func(error)) {
	defer s.b.clog.saves.Done()
	moved := errors.Is(err, ErrSessionMoved)
	s.mu.Lock()
	cs := s.cs
	cs.saving = false
	next := cs.next
	cs.next = nil
	switch {
	case err == nil:
		cs.rev = rev
		if (cs.dirty || len(next) > 0) && !s.gone && s.persistent {
			s.csendLocked(next)
			next = nil
		}
	case moved:
		s.b.log.Warn("cluster: persistent session moved to another node: it ends here", "client_id", s.id, "err", err)
	default:
		s.b.log.Warn("cluster: persistent session not saved", "client_id", s.id, "err", err)
		cs.dirty = true
		if cs.retry == nil && !s.gone {
			cs.retry = s.b.afterFunc(csaveRetry, func() {
				s.mu.Lock()
				defer s.unlock()
				s.cs.retry = nil
				if s.cs.dirty {
					s.csaveLocked(nil)
				}
			})
		}
	}
	gone := s.gone
	// The session ended meanwhile (cdeleteLocked): its record goes, at
	// this Save's revision; not when the record is another node's now.
	del, drev := cs.del && !cs.saving && !moved, cs.rev
	if !cs.saving {
		cs.del = false
	}
	s.mu.Unlock()
	if del {
		s.b.cstore.Delete(s.id, drev, s.b.logStoreErr)
	}
	if moved {
		s.b.lost(s)
	}
	for _, fn := range thens {
		fn(err)
	}
	if err == nil && gone {
		err = errNoStore
	}
	for _, fn := range next {
		fn(err)
	}
}

// cdeleteLocked deletes the session's record on condition that it is
// still at the revision of this node's Load or last Save (cs.rev): a node
// that missed the session's move (its takeover request lost) does not
// delete the new holder's record when its own copy expires; the store
// refuses with ErrSessionMoved, logged. A Save in flight is waited for
// (saved deletes at its revision).
func (s *session) cdeleteLocked() {
	cs := s.csLocked()
	if cs.saving {
		cs.del = true
		return
	}
	s.b.cstore.Delete(s.id, cs.rev, s.b.logStoreErr)
}

// lost ends s, a persistent session whose record another node took
// (ErrSessionMoved), as a takeover does (its connection gets DISCONNECT
// 0x8E), without saving: the record is the other node's.
func (b *Broker) lost(s *session) {
	go func() {
		unlock := b.ids.lock(s.id)
		defer unlock()
		b.mu.Lock()
		cur := b.sessions[s.id]
		b.mu.Unlock()
		if cur == s {
			b.endTaken(s.id, func(uint64) bool { return true }, false, false)
		}
	}()
}

// cforgetInbound takes an inbound QoS 2 packet id whose publish failed
// out of the record before its PUBREC (0x80; 3.1.1: none) is sent: the
// client may use the id for a new message at once, which a record still
// holding it would make another node take for a resend and swallow. then
// runs once the store answered; false (then not called) when the record
// does not hold pid. A Save that fails is tried again later.
func (s *session) cforgetInbound(pid uint16, then func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.cstore == nil || s.gone || s.inQoS2[pid] != in2Recorded {
		return false
	}
	s.inQoS2[pid] = in2Held
	s.csaveLocked(func(error) { then() })
	return true
}

// csaveForLocked saves the record with w waiting for it (an inbound QoS 2
// packet id, before its PUBREC).
func (s *session) csaveForLocked(w *storeWait) {
	w.n.Add(1)
	s.csaveLocked(w.done)
}

// csaveWait saves the session's record and waits for the store (bounded
// by d). s.mu is not held.
func (s *session) csaveWait(d time.Duration) error {
	ch := make(chan error, 1)
	s.mu.Lock()
	s.csaveLocked(func(err error) { ch <- err })
	s.mu.Unlock()
	return waitStore(ch, d)
}

func waitStore(ch <-chan error, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		return errNoStore
	}
}

// cstoreThenLocked is storeThenLocked in a cluster: om's packet id (or its
// released state) is in the record, saved, before afterStored sends its
// PUBLISH (or PUBREL). A Save that fails is tried again; om waits.
func (s *session) cstoreThenLocked(om *outMsg, w *storeWait) {
	om.waiting = true
	if _, ok := s.csLocked().open[om.lseq]; !ok {
		s.ctrackLocked(om)
	}
	if w != nil {
		w.n.Add(1)
	}
	s.csaveLocked(func(err error) {
		if err == nil {
			s.afterStored(om)
		}
		if w != nil {
			w.done(err)
		}
		if err != nil {
			// Sent once a later Save (the retry) carried it.
			s.b.afterFunc(csaveRetry, func() {
				s.mu.Lock()
				defer s.unlock()
				if om.waiting && s.inflight[om.pid] == om && !s.gone {
					s.cstoreThenLocked(om, nil)
				}
			})
		}
	})
}

// cwaitingLocked says whether, in a cluster, a message in flight waits
// for a Save before it is sent: a QoS 1 message after it then waits too
// (sendDurableLocked), so that the client gets them in order.
func (s *session) cwaitingLocked() bool {
	if s.b.cstore == nil {
		return false
	}
	for _, om := range s.inflight {
		if om.waiting {
			return true
		}
	}
	return false
}

// Record Data: what the broker keeps of a session besides the filters,
// expiry, disconnect time and cursor.
const cdataVersion = 1

// crecordLocked is the session's record as of now.
func (s *session) crecordLocked() *SessionRecord {
	cs := s.csLocked()
	rec := &SessionRecord{ClientID: s.id, Expiry: s.expiry, Cursor: s.cursorLocked()}
	if s.conn == nil {
		rec.DiscAt = s.discAt
		if rec.DiscAt == 0 {
			rec.DiscAt = time.Now().Unix()
		}
	}
	rec.Filters = make([]string, 0, len(s.subs))
	for f := range s.subs {
		rec.Filters = append(rec.Filters, f)
	}
	sort.Strings(rec.Filters)
	b := []byte{cdataVersion, byte(s.version)}
	var user string
	var state []byte
	if s.info != nil {
		user, state = s.info.Username, s.info.AuthState
	}
	b = appendString(b, user)
	b = binary.AppendUvarint(b, uint64(len(state)))
	b = append(b, state...)
	known := byte(0)
	if s.ownerKnown {
		known = 1
	}
	b = append(b, known)
	b = appendString(b, s.owner)
	for _, f := range rec.Filters {
		o := s.subs[f]
		b = append(b, packOpts(o))
		b = binary.AppendUvarint(b, uint64(o.ID))
	}
	var fl []*outMsg
	for _, om := range s.inflight {
		if om.lseq != 0 {
			fl = append(fl, om)
		}
	}
	sort.Slice(fl, func(i, j int) bool { return fl[i].lseq < fl[j].lseq })
	b = binary.AppendUvarint(b, uint64(len(fl)))
	for _, om := range fl {
		b = binary.AppendUvarint(b, om.lseq)
		b = binary.BigEndian.AppendUint16(b, om.pid)
		flags := om.qos
		if om.retain {
			flags |= 4
		}
		b = append(b, om.state, flags)
		b = binary.AppendUvarint(b, uint64(len(om.subIDs)))
		for _, id := range om.subIDs {
			b = binary.AppendUvarint(b, uint64(id))
		}
		b = appendString(b, om.group)
		b = appendString(b, om.filter)
	}
	// Up to upto, only the queued messages listed (and those in flight)
	// are owed: the others are done.
	b = binary.AppendUvarint(b, max(s.b.clog.last.Load(), cs.from, cs.upto))
	queued := make([]uint64, 0, len(cs.open)+len(cs.pending))
	for seq, om := range cs.open {
		if s.inflight[om.pid] != om || om.pid == 0 {
			queued = append(queued, seq)
		}
	}
	for seq := range cs.pending {
		queued = append(queued, seq)
	}
	slices.Sort(queued)
	b = binary.AppendUvarint(b, uint64(len(queued)))
	for _, seq := range queued {
		b = binary.AppendUvarint(b, seq)
	}
	// Inbound QoS 2 packet ids not released yet: a PUBLISH sent again
	// with one of them after a move is not routed again.
	var in []uint16
	for pid, st := range s.inQoS2 {
		if st != in2Held { // not routed yet, or refused: a resend is new
			in = append(in, pid)
		}
	}
	slices.Sort(in)
	b = binary.AppendUvarint(b, uint64(len(in)))
	for _, pid := range in {
		b = binary.BigEndian.AppendUint16(b, pid)
	}
	rec.Data = b
	return rec
}

// centry is an in-flight message of a record, before its message is read.
type centry struct {
	om  *outMsg
	seq uint64
}

// decodeRecord makes the session of rec (not yet registered anywhere): its
// subscriptions and the in-flight entries, whose messages the caller gets.
func (b *Broker) decodeRecord(rec *SessionRecord) (*session, []centry, error) {
	r := &reader{b: rec.Data}
	if r.byte() != cdataVersion {
		return nil, nil, errRecord
	}
	s := newSession(b, rec.ClientID)
	s.version = packet.Version(r.byte())
	s.expiry, s.persistent, s.discAt = rec.Expiry, true, rec.DiscAt
	s.info = &ClientInfo{ClientID: rec.ClientID, Version: s.version, Username: r.string()}
	if n := r.uvarint(); n > 0 && r.err == nil && n <= uint64(len(r.b)) {
		s.info.AuthState = append([]byte(nil), r.b[:n]...)
		r.b = r.b[n:]
	}
	s.ownerKnown = r.byte() == 1
	s.owner = r.string()
	s.info.Owner = s.owner
	s.subs = make(map[string]subOpts, len(rec.Filters))
	for _, f := range rec.Filters {
		o := unpackOpts(r.byte())
		o.ID = uint32(r.uvarint())
		s.subs[f] = o
	}
	cs := s.csLocked()
	cs.cursor, cs.rev = rec.Cursor, rec.Rev
	var fl []centry
	n := r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		om := &outMsg{lseq: r.uvarint()}
		om.pid = uint16(r.uint(2))
		om.state = r.byte()
		flags := r.byte()
		om.qos, om.retain = flags&3, flags&4 != 0
		if k := r.uvarint(); k > 0 && k < 1<<16 {
			om.subIDs = make([]uint32, k)
			for j := range om.subIDs {
				om.subIDs[j] = uint32(r.uvarint())
			}
		}
		om.group = r.string()
		om.filter = r.string()
		fl = append(fl, centry{om, om.lseq})
	}
	cs.upto = r.uvarint()
	n = r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		if cs.pending == nil {
			cs.pending = make(map[uint64]struct{})
		}
		cs.pending[r.uvarint()] = struct{}{}
	}
	n = r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		if s.inQoS2 == nil {
			s.inQoS2 = make(map[uint16]uint8)
		}
		s.inQoS2[uint16(r.uint(2))] = in2Received
	}
	return s, fl, r.err
}

// cconnect is CONNECT's step in a cluster, after the client id is claimed
// and before takeSession: a session of this node resumes as on one node;
// otherwise clean start deletes the record (or saves the new one), and a
// resuming client's record is loaded, with what it missed, as the session
// takeSession then finds. A new persistent session is saved before
// CONNACK. An error refuses the client (CONNACK 0x88).
//
// A session of this node is current only if the claim cl replaced is its
// own: otherwise the id moved to another node meanwhile (a takeover
// request that never came, a partition) and this node's copy is stale:
// it ends here (its connection, if any, gets DISCONNECT 0x8E) without
// touching the record, which is then loaded as from any other node.
func (c *conn) cconnect(clean bool, expiry uint32, owner string, cl *Claim) (uint64, error) {
	b := c.b
	id := c.info.ClientID
	b.mu.Lock()
	local := b.sessions[id]
	b.mu.Unlock()
	if local != nil {
		local.mu.Lock()
		gone, claim := local.gone, local.claim
		local.mu.Unlock()
		if !gone && (cl == nil || cl.Prev.Here && cl.Prev.Token == claim && claim != 0) {
			return 0, nil // takeSession resumes it or (clean) ends it, deleting its record
		}
		if !gone {
			b.log.Info("cluster: this node's copy of a session that moved is dropped; the session is loaded",
				"client_id", id, "node", cl.Prev.Node)
			b.endTaken(id, func(uint64) bool { return true }, clean, false)
		}
	}
	if clean && expiry == 0 && !b.mayHaveRecord(id) {
		return 0, nil // nothing to load, make or delete
	}
	c.mayBlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.connectTimeout())
	defer cancel()
	if err := b.loading.acquire(ctx); err != nil {
		b.log.Warn("cluster: persistent session not loaded: too many CONNECTs load sessions at once; the client is refused",
			"client_id", id, "loading", maxLoading, "err", err)
		return 0, packet.ErrServerUnavailable
	}
	defer b.loading.release()
	var rec *SessionRecord
	if !clean {
		var err error
		if rec, err = b.cstore.Load(ctx, id); err != nil {
			b.log.Warn("cluster: persistent session not loaded; the client is refused", "client_id", id, "err", err)
			return 0, packet.ErrServerUnavailable
		}
	}
	if rec == nil {
		if expiry == 0 && (!clean || !b.mayHaveRecord(id)) {
			return 0, nil
		}
		var rev atomic.Uint64
		ch := make(chan error, 1)
		if expiry == 0 {
			b.cstore.Delete(id, 0, func(err error) { ch <- err })
		} else {
			// The new session's record, before CONNACK: a client that
			// goes at once finds it on any node.
			nr := &SessionRecord{ClientID: id, Expiry: expiry, Cursor: max(b.clog.last.Load(), b.cstore.Head())}
			s := newSession(b, id)
			s.version, s.expiry, s.info, s.owner, s.ownerKnown = c.version, expiry, c.info, owner, true
			s.cs = &csess{cursor: nr.Cursor}
			nr.Data = s.crecordLocked().Data
			b.cstore.Save(nr, func(r uint64, err error) { rev.Store(r); ch <- err })
		}
		if err := waitStore(ch, c.connectTimeout()); err != nil {
			b.log.Warn("cluster: persistent session not written; the client is refused", "client_id", id, "err", err)
			return 0, packet.ErrServerUnavailable
		}
		return rev.Load(), nil
	}
	if err := b.cresume(ctx, rec); err != nil {
		b.log.Warn("cluster: persistent session not resumed; the client is refused", "client_id", id, "err", err)
		return 0, packet.ErrServerUnavailable
	}
	return 0, nil
}

// SessionIndex is what a SessionStore may also implement: whether its
// index (of this node, from the records' replication) has a record of
// clientID. A clean start without expiry deletes the record only when it
// may exist. A record another node made a moment ago and that the index
// does not have yet is that node's session, which the clean start's
// takeover ends and deletes there.
type SessionIndex interface {
	HasSession(clientID string) bool
}

// mayHaveRecord says whether the SessionStore may have a record of id.
func (b *Broker) mayHaveRecord(id string) bool {
	ix, ok := b.cstore.(SessionIndex)
	return !ok || ix.HasSession(id)
}

// cresume makes rec's session this node's: registered with the reader at
// its position h, its in-flight messages read back, then what it missed up
// to h (Backlog) queued in front of what the reader gives it meanwhile.
// The client id's lock is held.
func (b *Broker) cresume(ctx context.Context, rec *SessionRecord) error {
	s, fl, err := b.decodeRecord(rec)
	if err != nil {
		return err
	}
	cs := s.cs
	now := time.Now().UnixNano()
	// In-flight messages first: the reader must not give them again.
	for _, e := range fl {
		om := e.om
		if om.state != outReleased {
			m, err := b.cstore.Get(ctx, e.seq)
			if errors.Is(err, ErrMessageGone) {
				b.log.Warn("cluster: in-flight message no longer in the log", "client_id", s.id, "seq", e.seq, "err", err)
				b.drop(s.id, &Message{Topic: om.filter}, DropLogLimit)
				continue // done: not owed any more
			}
			if err != nil {
				// Unreachable is not gone: the client is refused and
				// comes back for its message.
				return fmt.Errorf("in-flight message %d not read: %w", e.seq, err)
			}
			om.msg = m
		} else {
			om.msg = &Message{} // PUBREL only: the client has the message
		}
		s.seq++
		om.seq, om.stored = s.seq, true
		if s.inflight == nil {
			s.inflight = make(map[uint16]*outMsg)
		}
		s.inflight[om.pid] = om
		if cs.open == nil {
			cs.open = make(map[uint64]*outMsg)
		}
		cs.open[om.lseq] = om
	}
	// A session with subscriptions holds the reader before its position
	// is read: every message after it reaches the session from the reader.
	if len(s.subs) > 0 {
		if err := b.holdReader(ctx); err != nil {
			return err
		}
		s.rhold = true
	}
	b.clog.mu.Lock()
	h := max(b.cstore.Head(), b.clog.last.Load())
	cs.from = h
	cs.loading = true
	b.mu.Lock()
	b.sessions[s.id] = s
	b.mu.Unlock()
	for f, o := range s.subs {
		b.indexSubscribe(s, f, o)
	}
	b.clog.mu.Unlock()
	// The cluster routes to this node what the session subscribes to
	// (QoS 0; QoS 1 and 2 come through the log).
	for f, o := range s.subs {
		for _, h := range b.subHooks {
			h.OnSubscribe(s.info, f, o.QoS)
		}
	}
	b.stats.persistent.Add(1)
	b.owned.add(s.owner, 1)

	var dropped uint64
	if h > rec.Cursor {
		sc := scratches.Get().(*scratch)
		dropped, err = b.cstore.Backlog(ctx, s.id, rec.Filters, rec.Cursor, h, func(seq uint64, clientID string, m *Message) error {
			s.mu.Lock()
			if cs.owed(seq) {
				sc.targets = sc.targets[:0]
				clear(sc.idx)
				matchSession(s, m, sc, clientID == s.id)
				if len(sc.targets) > 0 {
					s.takeLocked(&sc.targets[0], seq, m, nil, now)
				}
			}
			s.mu.Unlock()
			return nil
		})
		sc.targets = sc.targets[:0]
		sc.reset()
		scratches.Put(sc)
	}
	// Counted at once (not told to the DropHooks: the messages are gone,
	// and there may be millions): every sequence of the range the log
	// removed, an upper bound of the session's (SessionStore.Backlog).
	b.stats.drops[DropLogLimit].Add(dropped)
	s.mu.Lock()
	for seq := range cs.pending {
		if seq <= h {
			delete(cs.pending, seq) // not read back: gone from the log (dropped) or not matching
		}
	}
	cs.loading = false
	live := cs.live
	cs.live, cs.liveBytes = nil, 0
	for _, om := range live {
		s.deliverLocked(om, nil, nil, now)
	}
	s.mu.Unlock()
	if err != nil {
		// Not resumed: this node forgets the session, its record stays.
		b.forget(s)
		return err
	}
	return nil
}

// forget removes a persistent session from this node without touching
// its record: it moved to another node (handOff) or did not resume.
func (b *Broker) forget(s *session) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.gone = true
	s.online.Store(false)
	subs := s.subs
	s.b.stats.queued.Add(-int64(s.qlenLocked()))
	s.subs, s.inflight, s.queue, s.qhead, s.qbytes, s.inQoS2 = nil, nil, nil, 0, 0, nil
	wt, et := s.willTimer, s.expTimer
	s.willTimer, s.expTimer = nil, nil
	if s.cs != nil {
		b.stopTimer(s.cs.timer)
		b.stopTimer(s.cs.retry)
		s.cs.timer, s.cs.retry = nil, nil
	}
	persistent, owner := s.persistent, s.owner
	s.unlock()
	b.unregister(s, subs, wt, et, persistent, owner)
}

// handOff ends a persistent session here because a client took it over on
// another node: its final record is saved (waited for, so that the
// takeover's answer, and the other node's Load, come after it; not
// without save), then the session is forgotten here, its record kept. pw, a pending will, is
// published as endSession would. It reports false for a session it does
// not hand off (not persistent).
func (b *Broker) handOff(s *session, pw *will, save bool) bool {
	s.mu.Lock()
	if s.gone || !s.persistent {
		s.mu.Unlock()
		return false
	}
	if s.discAt == 0 || s.conn == nil {
		s.discAt = time.Now().Unix()
	}
	if s.pendingWill != nil && pw == nil {
		pw = s.pendingWill
	}
	s.pendingWill = nil
	ch := make(chan error, 1)
	if save {
		s.csaveLocked(func(err error) { ch <- err })
	} else {
		ch <- nil
	}
	s.mu.Unlock()
	if err := waitStore(ch, handOffWait); err != nil {
		b.log.Warn("cluster: final record of a session taken over not saved", "client_id", s.id, "err", err)
	}
	b.forget(s)
	if pw != nil {
		b.publishWill(pw)
	}
	return true
}

// subUndo is what a SUBSCRIBE changed of one filter of a persistent
// session in a cluster, put back if the record with the change is not
// saved.
type subUndo struct {
	filter    string
	set, prev subOpts
	existed   bool // prev is the subscription it replaced
}

// csubscribe answers a persistent session's SUBSCRIBE once the record with
// its new filters is saved; if it is not, every filter is refused (0x80)
// and the session's subscriptions are put back as they were (undo), the
// other nodes told of a filter no longer subscribed.
func (c *conn) csubscribe(p *packet.Subscribe, codes []byte, retained []newSub, undo []subUndo) {
	s := c.sess
	s.mu.Lock()
	s.csaveLocked(func(err error) {
		if err != nil {
			var back []subUndo
			s.mu.Lock()
			for _, u := range undo {
				// Unless a later SUBSCRIBE or UNSUBSCRIBE changed it.
				if o, ok := s.subs[u.filter]; !ok || o != u.set || s.gone {
					continue
				}
				if u.existed {
					s.subs[u.filter] = u.prev
					c.b.indexSubscribe(s, u.filter, u.prev)
				} else {
					delete(s.subs, u.filter)
					c.b.indexUnsubscribe(s, u.filter)
				}
				back = append(back, u)
			}
			for i := range codes {
				codes[i] = packet.ErrUnspecified.Value
			}
			s.cdirtyLocked()
			s.mu.Unlock()
			for _, u := range back {
				c.b.subscribeHooks(c.info, u.filter, u.prev.QoS, u.existed)
			}
			retained = nil
		}
		c.sendPacket(&packet.Suback{PacketID: p.PacketID, ReasonCodes: codes})
		for _, ns := range retained {
			c.b.sendRetained(s, ns.filter, ns.opts)
		}
	})
	s.mu.Unlock()
}

// subscribeHooks tells the hooks (the cluster's announcements) that info's
// client now subscribes to filter at qos, or (not on) no longer.
func (b *Broker) subscribeHooks(info *ClientInfo, filter string, qos byte, on bool) {
	if !on {
		for _, h := range b.unsubHooks {
			h.OnUnsubscribe(info, filter)
		}
		return
	}
	for _, h := range b.subHooks {
		h.OnSubscribe(info, filter, qos)
	}
}

// cunsubscribe answers a persistent session's UNSUBSCRIBE once the record
// without the filters is saved. If it is not, v5 answers 0x80 for each
// and the filters it removed are subscribed again as they were (removed),
// as the record has them; 3.1.1, whose UNSUBACK cannot refuse, keeps them
// removed and the record is saved again later.
func (c *conn) cunsubscribe(p *packet.Unsubscribe, codes []byte, removed []newSub) {
	s := c.sess
	s.mu.Lock()
	s.csaveLocked(func(err error) {
		if err != nil && codes != nil {
			var back []newSub
			s.mu.Lock()
			for _, r := range removed {
				// Unless a later SUBSCRIBE made it again.
				if _, ok := s.subs[r.filter]; ok || s.gone {
					continue
				}
				if s.subs == nil {
					s.subs = make(map[string]subOpts)
				}
				s.subs[r.filter] = r.opts
				c.b.indexSubscribe(s, r.filter, r.opts)
				back = append(back, r)
			}
			s.cdirtyLocked()
			s.mu.Unlock()
			for _, r := range back {
				c.b.subscribeHooks(c.info, r.filter, r.opts.QoS, true)
			}
			for i := range codes {
				codes[i] = packet.ErrUnspecified.Value
			}
		}
		c.sendPacket(&packet.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
	})
	s.mu.Unlock()
}
