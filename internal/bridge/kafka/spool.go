package kafka

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// maxDrainInflight bounds the spool entries handed to the producer and not
// yet acked: the duplicate window of a crash, with the checkpoint period.
const maxDrainInflight = 4096

// errSpoolFull is what a publish gets when the spool holds max_bytes.
var errSpoolFull = packet.Code{Value: packet.ErrQuotaExceeded.Value, Reason: "kafka spool full"}

// spool is the disk log behind ack mode spool: appends are group-committed
// (one write and fsync per batch) and acknowledged after the fsync; one
// drainer produces entries to Kafka in log order and advances a checkpoint
// as Kafka acks them; fully acked segments are deleted. Nothing is ever
// evicted: a full spool refuses appends.
type spool struct {
	cfg    config.KafkaSpool
	log    *slog.Logger
	routes []*route
	cl     *kgo.Client // producer without delivery timeout: retries until Kafka answers

	wake    chan struct{} // committer: pending appends (cap 1)
	newData chan struct{} // drainer: durable advanced (cap 1)
	durable atomic.Uint64 // entries below are fsynced

	// mu guards the fields below it.
	mu      sync.Mutex
	pending []pendingAppend
	bytes   int64 // bytes of entries not yet in Kafka, pending included
	closed  bool
	segs    []segment

	// acks (drainer side): entries below ackedTo are in Kafka.
	ackMu    sync.Mutex
	ackedTo  uint64
	ackedSet map[uint64]int64 // acked out of order: seq -> size
	inflight map[uint64]inflightEntry
	// sem holds one token per entry handed out and not yet in Kafka
	// (stuck entries included): at most maxDrainInflight.
	sem chan struct{}

	// stuckMu guards stuck: per Kafka topic, the entries Kafka refused
	// and those queued behind them (stuck.go).
	stuckMu sync.Mutex
	stuck   map[string]*stuckTopic

	// committer-owned.
	seg     *os.File
	segSize int64
	next    uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// inflightEntry is a spool entry handed to the producer.
type inflightEntry struct {
	ts    time.Time // MQTT receive time
	route int
}

type pendingAppend struct {
	buf   []byte
	route int
	done  func(error)
}

// openSpool recovers dir (truncating a torn tail) and starts the
// committer and the drainer.
func openSpool(cfg config.KafkaSpool, kcfg config.Kafka, routes []*route, log *slog.Logger, hooks ...kgo.Hook) (*spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("kafka: a route uses ack: spool but kafka.spool.dir is empty")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("kafka spool: %w", err)
	}
	s := &spool{cfg: cfg, log: log, routes: routes, wake: make(chan struct{}, 1), newData: make(chan struct{}, 1),
		ackedSet: map[uint64]int64{}, inflight: map[uint64]inflightEntry{},
		sem: make(chan struct{}, maxDrainInflight), stuck: map[string]*stuckTopic{}}
	if err := s.recover(); err != nil {
		return nil, fmt.Errorf("kafka spool %s: %w", cfg.Dir, err)
	}
	kcfg.ProduceTimeout = 0 // never fail a spooled record for time
	opts, err := clientOpts(kcfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, kgo.MaxBufferedRecords(maxDrainInflight+1), kgo.WithHooks(hooks...))
	if s.cl, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("kafka spool: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.commitLoop(ctx) }()
	go func() { defer s.wg.Done(); s.drainLoop(ctx) }()
	go func() { defer s.wg.Done(); s.retryLoop(ctx) }()
	return s, nil
}

// recover scans the segments: entries from the checkpoint on are waiting
// for Kafka; a torn tail is cut off (it was never acknowledged).
func (s *spool) recover() error {
	segs, err := listSegments(s.cfg.Dir)
	if err != nil {
		return err
	}
	ck := readCheckpoint(s.cfg.Dir)
	if len(segs) > 0 && segs[0].first > ck {
		ck = segs[0].first // entries before it were deleted once in Kafka
	}
	s.ackedTo, s.next = ck, ck
	for i, sg := range segs {
		f, err := os.OpenFile(sg.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		r := bufio.NewReader(f)
		seq, off := sg.first, int64(0)
		for {
			e, err := readEntry(r)
			if err == io.EOF {
				break
			}
			if err != nil {
				s.log.Warn("kafka spool: cutting torn tail", "segment", sg.path, "offset", off)
				if err := f.Truncate(off); err != nil {
					f.Close()
					return err
				}
				break
			}
			if seq >= ck {
				s.bytes += e.size
				s.gauge(e.route, 1, e.size)
			}
			seq++
			off += e.size
		}
		s.next = max(s.next, seq)
		if i == len(segs)-1 {
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				f.Close()
				return err
			}
			s.seg, s.segSize = f, off
		} else {
			f.Close()
		}
	}
	s.segs = segs
	s.durable.Store(s.next)
	return nil
}

// append queues r for the next group commit; done runs after the fsync
// (with the entry's size on disk), or at once with errSpoolFull.
func (s *spool) append(route int, r *kgo.Record, done func(size int64, err error)) {
	buf := encodeEntry(nil, route, r)
	size := int64(len(buf))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		done(0, packet.ErrServerShuttingDown)
		return
	}
	if s.bytes+size > s.cfg.MaxBytes {
		s.mu.Unlock()
		done(0, errSpoolFull)
		return
	}
	s.bytes += int64(len(buf))
	s.pending = append(s.pending, pendingAppend{buf: buf, route: route, done: func(err error) { done(size, err) }})
	s.mu.Unlock()
	// Counted from here so the drainer's decrement never comes first.
	s.gauge(route, 1, size)
	signal(s.wake)
}

// gauge moves a route's spooled count and bytes.
func (s *spool) gauge(route int, n, size int64) {
	if route < len(s.routes) {
		s.routes[route].stats.AckedNotInKafka.Add(n)
		s.routes[route].stats.SpoolBytes.Add(size)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// commitLoop writes each batch of pending appends with one write and one
// fsync, then acknowledges them.
func (s *spool) commitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			s.failPending(packet.ErrServerShuttingDown)
			return
		case <-s.wake:
		}
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		s.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		err := s.writeBatch(batch)
		if err != nil {
			s.log.Error("kafka spool: write failed", "err", err)
			var n int64
			for _, p := range batch {
				n += int64(len(p.buf))
				s.gauge(p.route, -1, -int64(len(p.buf)))
			}
			s.mu.Lock()
			s.bytes -= n
			s.mu.Unlock()
			err = packet.Code{Value: packet.ErrUnspecified.Value, Reason: "kafka spool: " + err.Error()}
		} else {
			s.durable.Store(s.next)
			signal(s.newData)
		}
		for _, p := range batch {
			p.done(err)
		}
	}
}

func (s *spool) writeBatch(batch []pendingAppend) error {
	var buf []byte
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := s.seg.Write(buf); err != nil {
			return err
		}
		s.segSize += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for _, p := range batch {
		if s.seg == nil || (s.segSize+int64(len(buf)) > 0 && s.segSize+int64(len(buf))+int64(len(p.buf)) > s.cfg.SegmentBytes) {
			if err := flush(); err != nil {
				return err
			}
			if err := s.rotate(); err != nil {
				return err
			}
		}
		buf = append(buf, p.buf...)
		s.next++
	}
	if err := flush(); err != nil {
		return err
	}
	return s.seg.Sync()
}

// rotate syncs and closes the current segment and starts one at s.next.
func (s *spool) rotate() error {
	if s.seg != nil {
		if err := s.seg.Sync(); err != nil {
			return err
		}
		s.seg.Close()
	}
	p := segPath(s.cfg.Dir, s.next)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if d, err := os.Open(s.cfg.Dir); err == nil { // the new name must survive a crash
		_ = d.Sync()
		d.Close()
	}
	s.seg, s.segSize = f, 0
	s.mu.Lock()
	s.segs = append(s.segs, segment{first: s.next, path: p})
	s.mu.Unlock()
	return nil
}

func (s *spool) failPending(err error) {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	for _, p := range batch {
		s.bytes -= int64(len(p.buf))
	}
	s.mu.Unlock()
	for _, p := range batch {
		s.gauge(p.route, -1, -int64(len(p.buf)))
		p.done(err)
	}
}
