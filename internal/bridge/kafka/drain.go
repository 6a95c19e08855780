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
	sem := make(chan struct{}, maxDrainInflight)
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
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		s.produce(e, seq, sem)
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

func (s *spool) produce(e *spoolEntry, seq uint64, sem chan struct{}) {
	var rt *route
	if e.route < len(s.routes) {
		rt = s.routes[e.route]
	}
	s.ackMu.Lock()
	s.inflight[seq] = inflightEntry{ts: e.rec.Timestamp, route: e.route}
	s.ackMu.Unlock()
	if rt != nil {
		rt.stats.InFlight.Add(1)
	}
	s.cl.Produce(context.Background(), e.rec, func(rec *kgo.Record, err error) {
		<-sem
		if rt != nil {
			rt.stats.InFlight.Add(-1)
		}
		if errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, context.Canceled) {
			return // stays in the spool for the next run
		}
		if rt != nil {
			if err != nil {
				// Kafka refused it for good (e.g. too large, no such topic):
				// retrying cannot help and would block every later entry.
				rt.stats.Failed.Add(1)
				s.log.Error("kafka spool: record refused by Kafka; skipped", "route", rt.name, "topic", rec.Topic, "err", err)
			} else {
				rt.stats.Produced.Add(1)
				rt.stats.observe(time.Since(rec.Timestamp))
			}
			rt.stats.AckedNotInKafka.Add(-1)
			rt.stats.SpoolBytes.Add(-e.size)
		}
		s.ack(seq, e.size)
	})
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
}

func (s *spool) snapshot() SpoolSnapshot {
	s.ackMu.Lock()
	var oldest time.Time
	for _, x := range s.inflight {
		if oldest.IsZero() || x.ts.Before(oldest) {
			oldest = x.ts
		}
	}
	snap := SpoolSnapshot{Entries: s.durable.Load() - s.ackedTo}
	s.ackMu.Unlock()
	if !oldest.IsZero() {
		snap.OldestAge = time.Since(oldest)
	}
	s.mu.Lock()
	snap.Bytes = s.bytes
	s.mu.Unlock()
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
