package psession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures a Store.
type Config struct {
	// Conn is the node's connection to the NATS fabric.
	Conn *nats.Conn
	// Cluster is cluster.name: the log's subjects are
	// culex.<Cluster>.pm.<topic> and culex.<Cluster>.pd.<client id key>.
	Cluster string
	// Prefix names the bucket <Prefix>_sessions and the stream
	// <Prefix>_pmsgs, as the registry names its buckets; default "culex".
	Prefix string
	// Replicas of the bucket and the stream: min(3, cores); default 3,
	// and 1 when JetStream is not clustered (one core).
	Replicas int
	// Timeout bounds every write (until a majority of the cores has it)
	// and every read a caller waits for: cluster.ack_timeout; default 15 s.
	Timeout time.Duration
	// MaxLogBytes and MaxLogAge bound the log
	// (cluster.sessions.max_log_bytes, max_log_age): past them its oldest
	// messages are removed. Defaults 1 GiB and 7 days.
	MaxLogBytes int64
	MaxLogAge   time.Duration
	// SweepEvery is how often the node deletes the records of expired
	// sessions; default 30 s, negative: never (replicants; they still
	// forget deleted records every minute).
	SweepEvery time.Duration
	// MarkerTTL is how long the bucket keeps the marker a deleted
	// record leaves (JetStream removes it then): the bucket holds the
	// records and the markers of the sessions deleted within MarkerTTL,
	// not one of every session ever deleted. Default 1 h, at least 1 s.
	MarkerTTL time.Duration
	// MaxQueued bounds the writes waiting to be sent to the cluster;
	// past it a write fails at once. Default 1<<16.
	MaxQueued int
	// Node and Incarnation name this node's run (the registry's): a
	// record is saved with them, and one saved while its client was
	// connected expires once Alive says that run is dead (its Session
	// Expiry Interval after this node first saw it dead). Alive is asked
	// every LiveEvery (default 1 s) about the holders of such records;
	// without it they never expire while their client is connected.
	Node, Incarnation string
	Alive             func(node, inc string) bool
	LiveEvery         time.Duration
	// ReaderOnDemand: the reader of the log (Deliver) runs only while
	// held (HoldReader), and stops ReaderLinger (default 30 s) after the
	// last hold is released; without it, it runs from Deliver on.
	ReaderOnDemand bool
	ReaderLinger   time.Duration
	// StuckAfter is how long a record's compare-and-sets may be refused
	// with error 10164 while the record is unchanged at the bucket's
	// leader before the node asks that leader to step down
	// (registry.CASGuard); default registry.DefaultStuckAfter.
	StuckAfter time.Duration
	Logger     *slog.Logger
}

// Errors a caller may see.
var (
	// ErrNotReady fails an operation before Start has opened the stream
	// and the bucket.
	ErrNotReady = errors.New("psession: not connected to the cluster yet")
	// ErrClosed fails an operation after Close.
	ErrClosed = errors.New("psession: closed")
	// ErrBusy fails a write when Config.MaxQueued writes wait already.
	ErrBusy = errors.New("psession: too many writes wait for the cluster")
)

// Store is a node's part of the cluster's persistent sessions; it
// implements broker.SessionStore.
type Store struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *slog.Logger
	subPre string // "culex.<cluster>.": pm. and pd. follow
	kvPre  string // "$KV.<bucket>." of the session records

	ready atomic.Bool
	kv    jetstream.KeyValue
	plog  jetstream.Stream // the log

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	w   writer
	idx index
	me  holder // Config.Node and Incarnation

	// head is the last sequence handed to Deliver's fn.
	head atomic.Uint64

	// startMu orders Deliver with the end of Start, and the reader's
	// starts and stops (HoldReader, rest): the reader starts after
	// whichever of Deliver and Start comes last (on demand: and once
	// held), before Store may succeed. It is held while the reader
	// starts (the log's last sequence is asked) and stops (its goroutine
	// is waited for).
	startMu   sync.Mutex
	deliverFn func(seq uint64, clientID string, m *broker.Message)
	run       *readerRun // the reader's goroutine, nil while it does not run
	rd        reader
	// hm guards the holds of the reader (HoldReader, ReleaseReader),
	// whether it runs (active: run is set and no rest decided), and the
	// timer of its rest. It is never held while waiting.
	hm      sync.Mutex
	holds   int
	active  bool
	rest    *time.Timer
	restGen uint64 // which rest timer is current

	stats stats
	info  infoShare // Backlog's shared stream info requests

	// guard watches the records' compare-and-sets refused with 10164.
	guard *registry.CASGuard
	// casFault (tests) runs before each compare-and-set of a record
	// (Save, Delete, Load's confirmation) is sent: an error fails it as
	// if JetStream had refused it.
	casFault atomic.Pointer[func(key string) error]
}

var _ broker.SessionStore = (*Store)(nil)

// stats are the Store's counters since it started (Counters).
type stats struct {
	Stored, StoreFailed, Skipped, Unreadable, Swept, ReaderLost atomic.Uint64
	ReaderStarts, ReaderStops                                   atomic.Uint64
	Saves, SaveConflicts, SaveFailed, Deletes, DeleteConflicts  atomic.Uint64
	DeleteFailed, Loads, LoadFailed, Busy, Direct               atomic.Uint64
	Backlogs, BacklogRead, BacklogDropped                       atomic.Uint64
	WatchUpdates, WatchUnchanged                                atomic.Uint64
	SharedOrphaned                                              atomic.Uint64
	InFlight                                                    atomic.Uint64
}

// Counters are the Store's counters since it started.
type Counters struct {
	// Stored counts the log writes a majority confirmed; StoreFailed
	// those that failed (refused, timed out, or ErrBusy).
	Stored, StoreFailed uint64
	// Skipped counts the messages Deliver's reader never handed to fn:
	// the log had removed them (its limits) before the reader, cut off
	// from the cluster, could read them. Unreadable counts bodies that
	// could not be decoded.
	Skipped, Unreadable uint64
	// Swept counts the expired records this node deleted.
	Swept uint64
	// ReaderLost counts the times Deliver's reader lost its consumer (a
	// core died or was cut off, the node's connection came back) and
	// made another. ReaderStarts and ReaderStops count the times it
	// started and stopped (Config.ReaderOnDemand: held, rested).
	ReaderLost, ReaderStarts, ReaderStops uint64
	// Saves and Deletes count the record writes a majority confirmed;
	// SaveConflicts and DeleteConflicts those refused because the record
	// was at another revision (broker.ErrSessionMoved); SaveFailed and
	// DeleteFailed the others that failed (no quorum, timeout, ErrBusy).
	Saves, SaveConflicts, SaveFailed       uint64
	Deletes, DeleteConflicts, DeleteFailed uint64
	// Loads counts the records read and confirmed (found or not);
	// LoadFailed the Loads that failed.
	Loads, LoadFailed uint64
	// Busy counts the writes of every kind failed at once with ErrBusy:
	// Config.MaxQueued writes waited already.
	Busy uint64
	// Direct counts the writes published on the caller's goroutine
	// (nothing queued before them), the others by the writer's.
	Direct uint64
	// Backlogs counts the Backlog reads that ended without an error,
	// BacklogRead the messages they read, BacklogDropped the sequences
	// of their ranges the log had removed (its limits; an upper bound of
	// what the sessions lost, which the broker counts as log_limit).
	Backlogs, BacklogRead, BacklogDropped uint64
	// WatchUpdates counts the record changes this node's watch of the
	// bucket received (every node receives every Save and Delete of the
	// cluster); WatchUnchanged those that left the index as it was (a
	// Save of this node, or one that changed only the cursor and the
	// broker's data).
	WatchUpdates, WatchUnchanged uint64
	// SharedOrphaned counts the QoS 1/2 messages published on this node
	// for a shared subscription group whose members are all persistent
	// sessions held by dead nodes: kept for no one, once per group.
	SharedOrphaned uint64
	// InFlight counts the times JetStream refused a record write (a
	// Save, a Delete, a Load's confirmation; each send of it) with error
	// 10164, as if another write of the record were in flight; Stepdowns
	// the times this node
	// asked the bucket's leader to step down because such refusals of a
	// record went on for Config.StuckAfter while it was unchanged.
	InFlight, Stepdowns uint64
	// Records is the number of records in this node's index (not
	// deleted, not expired); Waiting the writes queued or waiting for
	// their acknowledgement.
	Records, Waiting int
}

// Counters returns the Store's counters.
func (s *Store) Counters() Counters {
	st := &s.stats
	return Counters{Stored: st.Stored.Load(), StoreFailed: st.StoreFailed.Load(), Skipped: st.Skipped.Load(),
		Unreadable: st.Unreadable.Load(), Swept: st.Swept.Load(), ReaderLost: st.ReaderLost.Load(),
		ReaderStarts: st.ReaderStarts.Load(), ReaderStops: st.ReaderStops.Load(),
		Saves: st.Saves.Load(), SaveConflicts: st.SaveConflicts.Load(), SaveFailed: st.SaveFailed.Load(),
		Deletes: st.Deletes.Load(), DeleteConflicts: st.DeleteConflicts.Load(), DeleteFailed: st.DeleteFailed.Load(),
		Loads: st.Loads.Load(), LoadFailed: st.LoadFailed.Load(), Busy: st.Busy.Load(), Direct: st.Direct.Load(),
		Backlogs: st.Backlogs.Load(), BacklogRead: st.BacklogRead.Load(), BacklogDropped: st.BacklogDropped.Load(),
		WatchUpdates: st.WatchUpdates.Load(), WatchUnchanged: st.WatchUnchanged.Load(),
		SharedOrphaned: st.SharedOrphaned.Load(),
		InFlight:       st.InFlight.Load(), Stepdowns: s.guard.Stepdowns(),
		Records: s.idx.live(), Waiting: s.w.waiting()}
}

// New makes the Store of a node; Start connects it to the cluster.
func New(cfg Config) (*Store, error) {
	if cfg.Conn == nil {
		return nil, errors.New("psession: a NATS connection is required")
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "culex"
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "culex"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.MaxLogBytes <= 0 {
		cfg.MaxLogBytes = 1 << 30
	}
	if cfg.MaxLogAge <= 0 {
		cfg.MaxLogAge = 7 * 24 * time.Hour
	}
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = 30 * time.Second
	}
	if cfg.MarkerTTL <= 0 {
		cfg.MarkerTTL = time.Hour
	}
	cfg.MarkerTTL = max(cfg.MarkerTTL, time.Second)
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 1 << 16
	}
	if cfg.ReaderLinger <= 0 {
		cfg.ReaderLinger = 30 * time.Second
	}
	if cfg.LiveEvery <= 0 {
		cfg.LiveEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg, nc: cfg.Conn, log: cfg.Logger,
		subPre: "culex." + cfg.Cluster + ".",
		kvPre:  "$KV." + cfg.Prefix + "_sessions.",
		me:     holder{cfg.Node, cfg.Incarnation},
	}
	// The Store's own JetStream context: its asynchronous publishes
	// time out after Timeout and report to the Store's handlers.
	js, err := jetstream.New(cfg.Conn,
		jetstream.WithPublishAsyncTimeout(cfg.Timeout),
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncAckHandler(s.w.acked),
		jetstream.WithPublishAsyncErrHandler(s.w.failed))
	if err != nil {
		return nil, err
	}
	s.js = js
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.guard = registry.NewCASGuard(cfg.Conn, cfg.Logger, cfg.StuckAfter)
	s.idx.init()
	s.w.init(s)
	s.goRun(s.w.run)
	return s, nil
}

// LogStream and Bucket are the names of the log's stream and of the
// records' bucket.
func (s *Store) LogStream() string { return s.cfg.Prefix + "_pmsgs" }

// Bucket is the name of the session records' KV bucket.
func (s *Store) Bucket() string { return s.cfg.Prefix + "_sessions" }

// Start makes or opens the bucket and the stream (waiting while JetStream
// elects their leaders), loads the index of the records, and starts the
// record watch, the sweeper and, if Deliver was called, the reader. It
// returns once the index is loaded, or with ctx's error.
func (s *Store) Start(ctx context.Context) error {
	if err := s.open(ctx); err != nil {
		return err
	}
	w, err := registry.WatchAll(ctx, s.ctx, s.kv)
	if errors.Is(err, context.Canceled) && s.ctx.Err() != nil {
		return ErrClosed
	}
	if err != nil {
		return fmt.Errorf("psession: %w", err)
	}
	loaded := make(chan struct{})
	s.goRun(func() { s.watch(w, loaded) })
	select {
	case <-loaded:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrClosed
	}
	s.startMu.Lock()
	err = s.startReaderLocked(ctx)
	if err == nil {
		s.ready.Store(true)
	}
	s.startMu.Unlock()
	if err != nil {
		return err
	}
	s.goRun(s.sweep)
	s.log.Info("cluster: persistent sessions ready", "stream", s.LogStream(), "bucket", s.Bucket(), "replicas", s.cfg.Replicas)
	return nil
}

// open makes or opens the bucket and the stream.
func (s *Store) open(ctx context.Context) error {
	kcfg := jetstream.KeyValueConfig{Bucket: s.Bucket(), History: 1, Storage: jetstream.FileStorage,
		// Allows the markers' own TTL (marker); a bucket made before
		// is updated (JetStream allows turning TTLs on, not off).
		LimitMarkerTTL: s.cfg.MarkerTTL}
	scfg := jetstream.StreamConfig{
		Name:      s.LogStream(),
		Subjects:  []string{s.subPre + "pm.>", s.subPre + "pd.>"},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
		Discard:   jetstream.DiscardOld,
		MaxBytes:  s.cfg.MaxLogBytes,
		MaxAge:    s.cfg.MaxLogAge,
		// Reads by sequence (Get, the reader's start) go to the leader:
		// a replica may lag behind what a majority acknowledged.
		AllowDirect: false,
	}
	for {
		kcfg.Replicas, scfg.Replicas = s.cfg.Replicas, s.cfg.Replicas
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		kv, err := s.js.CreateOrUpdateKeyValue(c, kcfg)
		var st jetstream.Stream
		if err == nil {
			st, err = s.js.CreateOrUpdateStream(c, scfg)
		}
		cancel()
		if err == nil {
			s.kv, s.plog = kv, st
			return nil
		}
		if replicasNotSupported(err) && s.cfg.Replicas > 1 {
			s.log.Warn("cluster: JetStream is not clustered: persistent sessions have one replica")
			s.cfg.Replicas = 1
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("psession: open %s and %s: %w (last: %v)", s.Bucket(), s.LogStream(), ctx.Err(), err)
		case <-s.ctx.Done():
			return ErrClosed
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ready says whether Start has finished: until then every operation
// fails with ErrNotReady.
func (s *Store) Ready() error {
	if !s.ready.Load() {
		return ErrNotReady
	}
	return nil
}

// Close stops the reader, the watch and the sweeper; writes not yet
// confirmed fail with ErrClosed. The stream and bucket stay.
func (s *Store) Close() {
	s.hm.Lock()
	if s.rest != nil {
		s.rest.Stop()
		s.rest = nil
	}
	s.hm.Unlock()
	s.cancel()
	s.w.wakeUp()
	s.wg.Wait()
	s.w.failAll(ErrClosed)
	s.guard.Close()
}

func (s *Store) goRun(fn func()) {
	s.wg.Add(1)
	go func() { defer s.wg.Done(); fn() }()
}

// opCtx bounds one read a caller waits for.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// replicasNotSupported says whether err is JetStream's "replicas > 1 not
// supported in non-clustered mode" (10074).
func replicasNotSupported(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == 10074
}

// backoff waits a little longer at each attempt of a compare-and-set
// refused with 10164 (10 ms, 20 ms... up to 200 ms): false when ctx ends
// first.
func (s *Store) backoff(ctx context.Context, attempt int) bool {
	return registry.Wait(ctx, time.Duration(min(attempt+1, 20))*10*time.Millisecond)
}
