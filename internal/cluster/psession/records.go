package psession

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The value of a session's key (registry.Key of its client id) in the
// bucket:
//
//	version  byte (2; 1 has no holder)
//	client id  uvarint length and bytes (a long one's key is a digest)
//	holder   the node and incarnation that saved it (Config.Node,
//	         Config.Incarnation), each as uvarint length and bytes
//	filters  uvarint count, then each as uvarint length and bytes
//	expiry   uvarint: Session Expiry Interval in seconds
//	disc at  varint: Unix second the client left, 0 while connected
//	cursor   uvarint
//	data     the rest: the broker's
const recordVersion = 2

// holder names the node (and its run) that saved a record: a record
// saved while its client was connected expires once that run is dead.
type holder struct{ node, inc string }

func (h holder) String() string { return h.node + "\x00" + h.inc }

var errRecord = errors.New("psession: unreadable session record")

func encodeRecord(r *broker.SessionRecord, h holder) []byte {
	n := 16 + len(r.ClientID) + len(r.Data) + len(h.node) + len(h.inc)
	for _, f := range r.Filters {
		n += 2 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion)
	b = appendString(b, r.ClientID)
	b = appendString(b, h.node)
	b = appendString(b, h.inc)
	b = binary.AppendUvarint(b, uint64(len(r.Filters)))
	for _, f := range r.Filters {
		b = appendString(b, f)
	}
	b = binary.AppendUvarint(b, uint64(r.Expiry))
	b = binary.AppendVarint(b, r.DiscAt)
	b = binary.AppendUvarint(b, r.Cursor)
	return append(b, r.Data...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func decodeRecord(b []byte) (*broker.SessionRecord, holder, error) {
	var h holder
	if len(b) == 0 || b[0] != recordVersion && b[0] != 1 {
		return nil, h, errRecord
	}
	d := decoder{b: b[1:]}
	r := &broker.SessionRecord{ClientID: d.string()}
	if b[0] == recordVersion {
		h.node, h.inc = d.string(), d.string()
	}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, h, errRecord
	}
	for range n {
		r.Filters = append(r.Filters, d.string())
	}
	exp := d.uvarint()
	if exp > 0xFFFFFFFF {
		d.err = errRecord
	}
	r.Expiry = uint32(exp)
	r.DiscAt = d.varint()
	r.Cursor = d.uvarint()
	if d.err != nil {
		return nil, h, d.err
	}
	r.Data = bytes.Clone(d.b)
	return r, h, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// neverExpires is the Session Expiry Interval of a session that never
// expires (MQTT v5 3.1.2.11.2).
const neverExpires = 0xFFFFFFFF

// deadline is when a record expires, in Unix seconds; 0: not while its
// client is connected, or never. A record saved while its client was
// connected (DiscAt 0) counts its expiry from deadAt, when its holder was
// seen dead (0: not seen dead).
func deadline(r *broker.SessionRecord, deadAt int64) int64 {
	switch {
	case r.Expiry == neverExpires:
		return 0
	case r.DiscAt != 0:
		return r.DiscAt + int64(r.Expiry)
	case deadAt != 0:
		return deadAt + int64(r.Expiry)
	}
	return 0
}

// expired says whether a record with deadline dl has expired at now.
func expired(dl int64, now time.Time) bool { return dl != 0 && now.Unix() >= dl }

// Save implements broker.SessionStore: an asynchronous put of the
// record's key, in call order with every other write of the node. Once
// a majority has it, this node's index has it too (before done), so a
// publish on this node after a SUBACK that waited for the Save is stored.
func (s *Store) Save(rec *broker.SessionRecord, done func(uint64, error)) {
	key := registry.Key(rec.ClientID)
	msg := nats.NewMsg(s.kvPre + key)
	msg.Data = encodeRecord(rec, s.me)
	if rec.Rev != 0 {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rec.Rev, 10))
	}
	e := entryOf(rec, s.me)
	s.addCAS(key, msg, func(rev uint64, err error) {
		switch {
		case err == nil:
			s.stats.Saves.Add(1)
			s.guard.Done(s.Bucket(), key)
			e.rev = rev
			s.idx.apply(key, e)
		case wrongRev(err):
			s.stats.SaveConflicts.Add(1)
			err = fmt.Errorf("psession: save session %q at revision %d: %w", rec.ClientID, rec.Rev, broker.ErrSessionMoved)
		default:
			// 10164 included: no proof that the record changed. The
			// broker saves again (csaveRetry) at the same revision, and
			// is refused with 10071 once another node's write is there.
			s.refused(key, rec.Rev, err)
			s.stats.SaveFailed.Add(1)
			err = fmt.Errorf("psession: save session %q: %w", rec.ClientID, err)
		}
		done(rev, err)
	})
}

// casRetries is how many times a compare-and-set refused with 10164 is
// sent again at once.
const casRetries = 3

// addCAS queues msg, a compare-and-set of key, through the node's ordered
// writes. One JetStream refuses with 10164 is sent again at once, up to
// casRetries times, before done gets the refusal: the leader
// acknowledges a write before it stops tracking it as in flight, so the
// next compare-and-set of a writer that waited for the acknowledgement
// may be refused for the very write it waited for (seen in tests: a
// broker's Save would otherwise wait csaveRetry, 1 s). The node's
// writes of one key are one at a time (the broker waits for each Save),
// so sending it again later keeps their order.
func (s *Store) addCAS(key string, msg *nats.Msg, done func(uint64, error)) {
	tries := 0
	var again func(uint64, error)
	again = func(rev uint64, err error) {
		if registry.InFlight(err) {
			s.stats.InFlight.Add(1)
			if tries < casRetries {
				tries++
				s.w.add(&op{msg: copyMsg(msg), err: s.casFaultOf(key), done: again})
				return
			}
		}
		done(rev, err)
	}
	s.w.add(&op{msg: msg, err: s.casFaultOf(key), done: again})
}

// copyMsg is a new message with m's subject, headers and data: the
// writer tracks its writes by message.
func copyMsg(m *nats.Msg) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		c.Header[k] = slices.Clone(v)
	}
	c.Data = m.Data
	return c
}

// wrongRev says whether err is JetStream's refusal of a write whose
// expected last revision of the key is not the key's (10071). A
// replicated stream may refuse one with 10164 instead
// (registry.InFlight), which does not say that the key changed.
func wrongRev(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// refused tells the guard of a compare-and-set of key at rev that
// JetStream refused with err, when that was error 10164.
func (s *Store) refused(key string, rev uint64, err error) {
	if registry.InFlight(err) {
		s.guard.Refused(s.Bucket(), key, rev)
	}
}

// casFaultOf runs the test hook of the records' compare-and-sets.
func (s *Store) casFaultOf(key string) error {
	if h := s.casFault.Load(); h != nil {
		return (*h)(key)
	}
	return nil
}

// marker is the message that deletes key: a purge marker (as the KV
// API's Purge with PurgeTTL) that JetStream removes after MarkerTTL, so
// that the bucket does not keep one of every session ever deleted. Until
// then a node whose watch was cut off still learns of the delete when
// the watch resumes; a stale holder's Save or Delete at an old revision
// is refused with the marker there or without it (the key's last
// revision is then 0).
func (s *Store) marker(key string) *nats.Msg {
	msg := nats.NewMsg(s.kvPre + key)
	msg.Header.Set("KV-Operation", "PURGE")
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	msg.Header.Set(jetstream.MsgTTLHeader, s.cfg.MarkerTTL.String())
	return msg
}

// Delete implements broker.SessionStore: a delete marker on the key, on
// condition that rev (not 0) is still its last revision; a node that
// missed its session's move gets broker.ErrSessionMoved and the new
// holder's record stays.
func (s *Store) Delete(clientID string, rev uint64, done func(error)) {
	key := registry.Key(clientID)
	msg := s.marker(key)
	if rev != 0 {
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	}
	s.addCAS(key, msg, func(nrev uint64, err error) {
		switch {
		case err == nil:
			s.stats.Deletes.Add(1)
			s.guard.Done(s.Bucket(), key)
			s.idx.apply(key, &entry{rev: nrev})
		case wrongRev(err):
			s.stats.DeleteConflicts.Add(1)
			err = fmt.Errorf("psession: delete session %q at revision %d: %w", clientID, rev, broker.ErrSessionMoved)
		default:
			s.refused(key, rev, err)
			s.stats.DeleteFailed.Add(1)
			err = fmt.Errorf("psession: delete session %q: %w", clientID, err)
		}
		done(err)
	})
}

// Load implements broker.SessionStore: the key's last value, read at the
// bucket's leader (a replica may lag behind a Save a majority confirmed),
// then confirmed at a majority by writing it again on condition that it
// is still the key's last revision. A leader cut off from the others
// goes on answering reads until it steps down (seconds), while the
// others may elect a leader and accept Saves: without the confirmation a
// node on the minority side could resume a session from a stale record.
// The confirming write is one more replicated write per Load; the record
// keeps its content (a missing key gets a delete marker).
func (s *Store) Load(ctx context.Context, clientID string) (_ *broker.SessionRecord, err error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	defer func() { s.stats.count(err, &s.stats.Loads, &s.stats.LoadFailed) }()
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	key := registry.Key(clientID)
	for attempt := 0; ; attempt++ {
		rev, val, err := s.readKey(ctx, key)
		if err != nil {
			return nil, err
		}
		crev, err := s.confirm(ctx, key, rev, val)
		if wrongRev(err) {
			continue // changed since the read: read it again
		}
		if registry.InFlight(err) {
			// Maybe changing (another node's write in flight), maybe
			// not: read it again, a little later each time.
			s.refused(key, rev, err)
			if !s.backoff(ctx, attempt) {
				return nil, fmt.Errorf("psession: load session %q: %w", clientID, err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("psession: load session %q: %w", clientID, err)
		}
		s.guard.Done(s.Bucket(), key)
		if val == nil {
			return nil, nil
		}
		r, h, err := decodeRecord(val)
		if err != nil {
			return nil, fmt.Errorf("session %q: %w", clientID, err)
		}
		if r.ClientID != clientID || expired(deadline(r, s.idx.deadAt(h)), time.Now()) {
			return nil, nil // another id of the same digest, or expired
		}
		r.Rev = crev
		return r, nil
	}
}

// count adds one to ok or, when err is not nil, to failed.
func (st *stats) count(err error, ok, failed *atomic.Uint64) {
	if err != nil {
		failed.Add(1)
	} else {
		ok.Add(1)
	}
}

// confirm writes val (nil: a delete marker) to key again if rev is still
// its last revision (0: the key has none), through the node's ordered
// writes; it returns once a majority has it, or fails.
func (s *Store) confirm(ctx context.Context, key string, rev uint64, val []byte) (uint64, error) {
	msg := nats.NewMsg(s.kvPre + key)
	msg.Data = val
	if val == nil {
		msg = s.marker(key)
	}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	type answer struct {
		rev uint64
		err error
	}
	ch := make(chan answer, 1)
	s.addCAS(key, msg, func(rev uint64, err error) { ch <- answer{rev, err} })
	select {
	case a := <-ch:
		return a.rev, a.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// readKey reads a key's last value from the bucket's leader: the KV API
// would read it from any replica (the bucket allows direct gets), which
// may lag behind a Save a majority confirmed.
func (s *Store) readKey(ctx context.Context, key string) (uint64, []byte, error) {
	rev, val, err := registry.ReadLast(ctx, s.nc, s.Bucket(), key)
	if err != nil {
		return 0, nil, fmt.Errorf("psession: %w", err)
	}
	return rev, val, nil
}
