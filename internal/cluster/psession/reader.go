package psession

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/cluster/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The reader: one ephemeral consumer of the whole log (R1, in memory, no
// acks), made from Head()+1. It is lost when two heartbeats in a row do
// not come (the core hosting it died or is cut off), when the server says
// it is gone, when a delivery is out of order (one went missing), or when
// the node's connection comes back; the reader then makes another from
// Head()+1, so nothing is skipped or repeated. An attempt asks the log's
// leader, then makes the consumer, each request bounded by readerRequest;
// attempts follow each other every readerRetry..
// readerRetryMax: once the log and the meta group have a leader again
// (an election takes seconds after a core dies), the reader delivers again
// within readerRecovery, with a request every half second at most while
// there is none. (nats.go's ordered consumer, used before, waited 10 s per
// attempt and backed off to 10 s: 5 to 21 s after the election.)
const (
	readerHeartbeat = time.Second
	readerRequest   = 1500 * time.Millisecond
	readerRetry     = 250 * time.Millisecond
	readerRetryMax  = 500 * time.Millisecond
	// readerIdle is how long the server keeps a consumer nobody pulls
	// from (one left behind by a reader cut off).
	readerIdle = time.Minute
	// readerRecovery bounds the time from the leaders' election to the
	// reader delivering again once it saw its consumer lost: the attempt
	// in flight at the election, a pause, the next attempt.
	readerRecovery = readerRequest + readerRetryMax
	// readerPlacements bounds the consumers the first attempt makes to get
	// one on the log's leader (each lands there with one chance in three),
	// readerPlacing the time it spends on the ones after the first. An
	// attempt after a loss keeps the first it makes: readerRecovery holds.
	readerPlacements = 24
	readerPlacing    = 2 * time.Second
	// readerBatch is how many deliveries the reader's pull requests ask
	// for (nats.go asks again when half are taken): messages are ~200
	// bytes, and a larger budget means a pull round trip to the log's
	// leader every 2,048 messages instead of every 250 (nats.go's 500),
	// so that a slow round trip under load does not leave the consumer
	// without a request while messages wait on the leader.
	readerBatch = 4096
)

// errGap and errReconnected are why a consumer is given up besides the
// server's errors.
var (
	errGap         = errors.New("a delivery went missing")
	errReconnected = errors.New("the node's connection came back")
)

// readerCons is one consumer of the reader.
type readerCons struct {
	name    string
	host    string // the server it is on
	cc      jetstream.ConsumeContext
	dseq    uint64 // the consumer's sequence of the last delivery taken
	stopped bool   // no delivery is taken any more
	lost    bool   // reported on the reader's lost channel
}

// reader is the state shared by the reader's goroutine and the
// consumer's callbacks.
type reader struct {
	// mu orders the deliveries (fn is called under it) with stopping a
	// consumer: once stop returns, Head stays until the next consumer.
	mu   sync.Mutex
	cur  *readerCons
	lost chan error
	// onLeader: the current consumer was made on the log's leader.
	onLeader atomic.Bool
}

// read runs the reader from Head()+1 until ctx ends (the Store closes, or
// the reader rests: rest).
func (s *Store) read(ctx context.Context, fn func(uint64, string, *broker.Message)) {
	reconnected := s.nc.StatusChanged(nats.CONNECTED)
	defer s.nc.RemoveStatusListener(reconnected)
	s.rd.mu.Lock()
	s.rd.lost = make(chan error, 1)
	s.rd.mu.Unlock()
	elected := make(chan string, 1)
	if sub, err := s.nc.Subscribe(leaderElected+s.LogStream(), func(m *nats.Msg) { s.onElected(m, elected) }); err == nil {
		defer sub.Unsubscribe()
	}
	var since time.Time // when the consumer was lost; zero at the start
	c := s.openReader(ctx, fn, since)
	for c != nil {
		var why error
		select {
		case <-ctx.Done():
			s.stopReader(c)
			if c.cc != nil {
				<-c.cc.Closed()
			}
			return
		case why = <-s.rd.lost:
		case <-reconnected:
			why = errReconnected
		case leader := <-elected:
			if c, why = s.moveReader(ctx, c, leader, fn); why == nil {
				continue
			}
		}
		since = time.Now()
		s.stats.ReaderLost.Add(1)
		s.log.Warn("cluster: persistent sessions: the log's reader lost its consumer; it makes another from the next message",
			"next", s.head.Load()+1, "why", why)
		s.stopReader(c)
		c = s.openReader(ctx, fn, since)
	}
}

// leaderElected is the subject prefix of JetStream's advisories of a
// stream's new leader.
const leaderElected = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."

// onElected passes the log's new leader from an advisory to the reader,
// the latest only.
func (s *Store) onElected(m *nats.Msg, elected chan string) {
	var adv struct {
		Leader string `json:"leader"`
	}
	if json.Unmarshal(m.Data, &adv) != nil || adv.Leader == "" {
		return
	}
	for {
		select {
		case elected <- adv.Leader:
			return
		default:
		}
		select {
		case <-elected:
		default:
		}
	}
}

// moveReader moves the reader to a consumer on leader, the log's new
// leader, when c is elsewhere (consumers stay where they are made when
// the leader changes). The new consumer is made from Head()+1 while c
// goes on; it delivers nothing until c is stopped and it is started, and
// the messages c delivered meanwhile are skipped (onLog): nothing is
// skipped or repeated. It returns the reader's consumer: c when it stays
// (not made on leader, or leader is where c is already), and an error
// when the new one failed to start after c was stopped.
func (s *Store) moveReader(ctx context.Context, c *readerCons, leader string, fn func(uint64, string, *broker.Message)) (*readerCons, error) {
	if c.host == leader {
		return c, nil
	}
	cons, err := s.makeReader(ctx, leader, true)
	if err != nil {
		return c, nil
	}
	if consumerHost(cons) != leader {
		s.deleteConsumer(cons.CachedInfo().Name)
		return c, nil
	}
	s.stopReader(c)
	next, err := s.startReading(cons, leader, fn)
	if err != nil {
		return next, err
	}
	s.log.Debug("cluster: persistent sessions: the log's reader moved to the log's new leader", "leader", leader)
	return next, nil
}

// openReader makes a consumer from Head()+1, trying until it succeeds or
// ctx ends (nil).
func (s *Store) openReader(ctx context.Context, fn func(uint64, string, *broker.Message), since time.Time) *readerCons {
	pause := readerRetry
	for attempt := 1; ; attempt++ {
		c, err := s.consume(ctx, fn, since.IsZero())
		if err == nil {
			if !since.IsZero() {
				s.log.Info("cluster: persistent sessions: the log's reader reads again",
					"from", s.head.Load()+1, "after", time.Since(since).Round(time.Millisecond), "attempts", attempt)
			}
			return c
		}
		if attempt == 1 && since.IsZero() {
			s.log.Warn("cluster: persistent sessions: the log's reader waits for the log", "err", err)
		} else {
			s.log.Debug("cluster: persistent sessions: the log's reader waits for the log", "attempt", attempt, "err", err)
		}
		if !registry.Wait(ctx, pause) {
			return nil
		}
		pause = min(2*pause, readerRetryMax)
	}
}

// consume makes one consumer from Head()+1, on the log's leader if place
// and it can, and starts taking its deliveries.
func (s *Store) consume(ctx context.Context, fn func(uint64, string, *broker.Message), place bool) (*readerCons, error) {
	// First the log's leader must answer: a consumer made on a replica
	// while the log has none may stay silent for many seconds after
	// the election.
	c, cancel := context.WithTimeout(ctx, readerRequest)
	info, err := s.plog.Info(c)
	cancel()
	if err != nil {
		return nil, err
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	cons, err := s.makeReader(ctx, leader, place)
	if err != nil {
		return nil, err
	}
	return s.startReading(cons, leader, fn)
}

// startReading makes cons, made on the log whose leader is leader, the reader's
// consumer and starts taking its deliveries.
func (s *Store) startReading(cons jetstream.Consumer, leader string, fn func(uint64, string, *broker.Message)) (*readerCons, error) {
	c := &readerCons{name: cons.CachedInfo().Name, host: consumerHost(cons)}
	s.rd.mu.Lock()
	s.rd.cur = c
	s.rd.mu.Unlock()
	s.rd.onLeader.Store(leader != "" && c.host == leader)
	cc, err := cons.Consume(func(msg jetstream.Msg) { s.onLog(c, msg, fn) },
		jetstream.PullHeartbeat(readerHeartbeat), jetstream.PullExpiry(5*time.Second), jetstream.PullMaxMessages(readerBatch),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if consumerLost(err) {
				s.lose(c, err)
			} else {
				s.log.Debug("cluster: persistent sessions: the log's reader", "err", err)
			}
		}))
	if err != nil {
		s.stopReader(c)
		return c, err
	}
	s.rd.mu.Lock()
	c.cc = cc
	s.rd.mu.Unlock()
	return c, nil
}

// makeReader makes the reader's consumer from Head()+1; if place, on the
// log's leader (leader) when it can. JetStream puts a consumer of one replica on
// any of the log's replicas, at random. The leader hands a message to its
// consumers once a majority stored it; a follower only once it learns the
// commit, from the leader's next append, which it first writes and fsyncs
// itself: one fsync later (BenchmarkStoreDeliver). A consumer made
// elsewhere is deleted and made again, up to readerPlacements times in all
// and within readerPlacing; past them the last one made is kept.
func (s *Store) makeReader(rctx context.Context, leader string, place bool) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       s.head.Load() + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: readerIdle,
		Replicas:          1,
		MemoryStorage:     true,
	}
	ctx, cancel := context.WithTimeout(rctx, readerRequest)
	defer cancel()
	cons, err := s.plog.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tries := 1
	if place {
		tries = readerPlacements
	}
	ctx, cancel = context.WithTimeout(rctx, readerPlacing)
	defer cancel()
	made := 1
	for ; made < tries && leader != "" && consumerHost(cons) != leader; made++ {
		next, err := s.plog.CreateConsumer(ctx, cfg)
		if err != nil {
			break // keep the one made
		}
		s.deleteConsumer(cons.CachedInfo().Name)
		cons = next
	}
	s.log.Debug("cluster: persistent sessions: the log's reader has its consumer",
		"on", consumerHost(cons), "log_leader", leader, "made", made)
	return cons, nil
}

// consumerHost is the server a consumer of one replica is on.
func consumerHost(c jetstream.Consumer) string {
	if ci := c.CachedInfo(); ci != nil && ci.Cluster != nil {
		return ci.Cluster.Leader
	}
	return ""
}

// deleteConsumer deletes the log's consumer name in the background,
// bounded (one nobody pulls from goes after readerIdle anyway).
func (s *Store) deleteConsumer(name string) {
	s.goRun(func() {
		ctx, cancel := context.WithTimeout(context.Background(), readerRequest)
		defer cancel()
		_ = s.plog.DeleteConsumer(ctx, name)
	})
}

// consumerLost says whether err from a consumer means it is gone.
func consumerLost(err error) bool {
	for _, e := range []error{jetstream.ErrNoHeartbeat, jetstream.ErrConsumerDeleted, jetstream.ErrConsumerNotFound,
		jetstream.ErrConsumerLeadershipChanged, nats.ErrNoResponders, nats.ErrConnectionClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// lose reports c lost to the reader, once, unless it was stopped.
func (s *Store) lose(c *readerCons, why error) {
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
	s.loseLocked(c, why)
}

func (s *Store) loseLocked(c *readerCons, why error) {
	if c.stopped || c.lost {
		return
	}
	c.lost = true
	select {
	case s.rd.lost <- why:
	default:
	}
}

// stopReader stops c's deliveries and deletes it (in the background,
// bounded): a report of c lost still queued is dropped.
func (s *Store) stopReader(c *readerCons) {
	s.rd.mu.Lock()
	c.stopped = true
	cc := c.cc
	select {
	case <-s.rd.lost:
	default:
	}
	s.rd.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	s.deleteConsumer(c.name)
}

// readerName is the name of the reader's consumer, "" before the first.
func (s *Store) readerName() string {
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
	if s.rd.cur == nil {
		return ""
	}
	return s.rd.cur.name
}

// onLog hands one delivery of c to fn, in sequence order.
func (s *Store) onLog(c *readerCons, msg jetstream.Msg, fn func(uint64, string, *broker.Message)) {
	meta, err := msg.Metadata()
	s.rd.mu.Lock()
	defer s.rd.mu.Unlock()
	if c.stopped {
		return
	}
	if err != nil || meta.Sequence.Consumer != c.dseq+1 {
		s.loseLocked(c, errGap)
		return
	}
	c.dseq = meta.Sequence.Consumer
	seq, h := meta.Sequence.Stream, s.head.Load()
	if seq <= h {
		return // delivered by the consumer before this one (moveReader)
	}
	if seq > h+1 {
		n := seq - h - 1
		s.stats.Skipped.Add(n)
		s.log.Error("cluster: persistent sessions: the log removed messages this node had not read yet (cluster.sessions.max_log_bytes or max_log_age)",
			"from", h+1, "to", seq-1, "skipped", n)
	}
	clientID, m, err := decodeBody(msg.Data())
	s.head.Store(seq)
	if err != nil {
		s.stats.Unreadable.Add(1)
		s.log.Warn("cluster: persistent sessions: unreadable message in the log", "seq", seq, "err", err)
		return
	}
	fn(seq, clientID, m)
}
