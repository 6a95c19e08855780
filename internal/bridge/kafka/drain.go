package kafka

import (
	"bufio"
	"context"
	"errors"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// drainLoop produces durable entries to Kafka in log order, at most
// maxDrainInflight at a time, and every 100 ms writes the checkpoint and
// deletes fully acked segments.
func (s *spool) drainLoop(ctx context.Context) {
	s.ackMu.Lock()
	seq := s.ackedTo
	s.ackMu.Unlock()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var (
		f    *os.File
		r    *bufio.Reader
		last uint64 // checkpoint written
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		if seq >= s.durable.Load() {
			select {
			case <-ctx.Done():
				return
			case <-s.newData:
			case <-tick.C:
				last = s.checkpoint(last)
			}
			continue
		}
		select {
		case <-tick.C:
			last = s.checkpoint(last)
		default:
		}
		if f == nil {
			var err error
			if f, r, err = s.openAt(seq); err != nil {
				s.log.Error("kafka spool: open segment", "seq", seq, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
				continue
			}
		}
		e, err := readEntry(r)
		if err != nil { // end of this segment: the next one starts at seq
			f.Close()
			f, r = nil, nil
			continue
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.produce(e, seq)
		seq++
	}
}

// openAt opens the segment holding seq, positioned at that entry.
func (s *spool) openAt(seq uint64) (*os.File, *bufio.Reader, error) {
	s.mu.Lock()
	var sg segment
	found := false
	for _, x := range s.segs {
		if x.first <= seq {
			sg, found = x, true
		}
	}
	s.mu.Unlock()
	if !found {
		return nil, nil, errors.New("no segment holds the entry")
	}
	f, err := os.Open(sg.path)
	if err != nil {
		return nil, nil, err
	}
	r := bufio.NewReaderSize(f, 256<<10)
	for n := sg.first; n < seq; n++ {
		if _, err := readEntry(r); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	return f, r, nil
}

// produce hands entry seq to the producer unless its topic is stuck: then
// it queues behind the entries Kafka refused, in log order.
func (s *spool) produce(e *spoolEntry, seq uint64) {
	s.ackMu.Lock()
	s.inflight[seq] = inflightEntry{ts: e.rec.Timestamp, route: e.route}
	s.ackMu.Unlock()
	if s.queueIfStuck(e, seq) {
		return
	}
	s.send(e, seq, nil)
}

// send produces one entry; then, if not nil, runs after Kafka acked it.
func (s *spool) send(e *spoolEntry, seq uint64, then func()) {
	rt := s.route(e)
	if rt != nil {
		rt.stats.InFlight.Add(1)
	}
	s.cl.Produce(context.Background(), e.rec, func(rec *kgo.Record, err error) {
		if rt != nil {
			rt.stats.InFlight.Add(-1)
		}
		if errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, context.Canceled) {
			return // stays in the spool for the next run
		}
		if err != nil {
			// Kafka refused it (no such topic, too large...): it was
			// acknowledged to a device, so it is kept, never skipped.
			s.hold(e, seq, err)
			return
		}
		if rt != nil {
			rt.stats.Produced.Add(1)
			rt.stats.observe(time.Since(rec.Timestamp))
			rt.stats.AckedNotInKafka.Add(-1)
			rt.stats.SpoolBytes.Add(-e.size)
		}
		s.ack(seq, e.size)
		<-s.sem
		if then != nil {
			then()
		}
	})
}

func (s *spool) route(e *spoolEntry) *route {
	if e.route < len(s.routes) {
		return s.routes[e.route]
	}
	return nil
}

// ack records that entry seq is in Kafka and advances ackedTo over every
// contiguous acked entry.
func (s *spool) ack(seq uint64, size int64) {
	s.ackMu.Lock()
	delete(s.inflight, seq)
	s.ackedSet[seq] = size
	var freed int64
	for {
		n, ok := s.ackedSet[s.ackedTo]
		if !ok {
			break
		}
		delete(s.ackedSet, s.ackedTo)
		freed += n
		s.ackedTo++
	}
	s.ackMu.Unlock()
	if freed > 0 {
		s.mu.Lock()
		s.bytes -= freed
		s.mu.Unlock()
	}
}

// checkpoint persists ackedTo if it moved, then deletes the segments
// whose entries are all below it (checkpoint first, so a crash never
// finds a checkpoint older than the oldest segment's start by mistake).
func (s *spool) checkpoint(last uint64) uint64 {
	s.ackMu.Lock()
	to := s.ackedTo
	s.ackMu.Unlock()
	if to == last {
		return last
	}
	if err := writeCheckpoint(s.cfg.Dir, to); err != nil {
		s.log.Warn("kafka spool: checkpoint", "err", err)
		return last
	}
	s.mu.Lock()
	for len(s.segs) > 1 && s.segs[1].first <= to {
		if err := os.Remove(s.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("kafka spool: delete segment", "err", err)
			break
		}
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
	return to
}

// SpoolSnapshot describes the spool.
type SpoolSnapshot struct {
	// Entries and Bytes are acknowledged to devices and not yet in Kafka.
	Entries uint64
	Bytes   int64
	// OldestAge is how long the oldest entry handed to the producer has
	// been waiting for Kafka (0 when none is in flight).
	OldestAge time.Duration
	// Stuck is entries Kafka refused (e.g. their topic was deleted after
	// they were acknowledged) and those of the same topics queued behind
	// them; they are kept and retried with backoff, never dropped.
	// StuckAge is how long since the oldest refusal; StuckTopics names them.
	Stuck       int64
	StuckAge    time.Duration
	StuckTopics []string
}

func (s *spool) snapshot() SpoolSnapshot {
	s.ackMu.Lock()
	var oldest time.Time
	for _, x := range s.inflight {
		if oldest.IsZero() || x.ts.Before(oldest) {
			oldest = x.ts
		}
	}
	// Entries acked out of order (around stuck ones) are in Kafka already.
	snap := SpoolSnapshot{Entries: s.durable.Load() - s.ackedTo - uint64(len(s.ackedSet))}
	s.ackMu.Unlock()
	if !oldest.IsZero() {
		snap.OldestAge = time.Since(oldest)
	}
	s.mu.Lock()
	snap.Bytes = s.bytes
	s.mu.Unlock()
	snap.Stuck, snap.StuckAge, snap.StuckTopics = s.stuckStats()
	return snap
}

// routeAge is how long the oldest in-flight entry of route has waited.
func (s *spool) routeAge(route int) time.Duration {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	var oldest time.Time
	for _, x := range s.inflight {
		if x.route == route && (oldest.IsZero() || x.ts.Before(oldest)) {
			oldest = x.ts
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}

// close stops appends, the committer and the drainer, then the producer
// (unacked entries stay for the next run), and writes the checkpoint.
func (s *spool) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = s.cl.Flush(ctx)
	cancel()
	s.cl.Close()
	s.checkpoint(^uint64(0))
	if s.seg != nil {
		_ = s.seg.Sync()
		s.seg.Close()
	}
}
