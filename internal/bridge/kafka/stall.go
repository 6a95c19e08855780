package kafka

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Backpressure of Kafka -> MQTT. Every command is published with
// broker.Message.AllOrNothing: when a matching session's queue is full
// the broker routes nothing and says so before Publish returns. The
// partition then stops at that record: the records after it (already
// polled) wait with it, its fetching is paused (PauseFetchPartitions, so
// the client buffers nothing more for it), and nothing from it on is
// committed. Other partitions go on. Every stallRetry the stalled record
// is published again, in order with those behind it: it goes through once
// the session has room (its device drained the queue) or no longer
// matches (it expired: the record is then routed to whoever else
// matches, committed, and counted Undeliverable). Since a refusal routes
// nothing, a retry never gives a session a copy twice. Once the same
// session has stalled the partition for the command's max_stall, the
// records it refuses are published without AllOrNothing (with Keep): the
// full session loses its copy (the broker counts a queue_full drop), the
// record is counted Undeliverable and committed, and the partition goes on.
//
// In a cluster, every command also carries Message.Hold (its max_stall):
// a node with matching subscribers that does not accept it in time is
// sent it again until it does or is known dead (internal/cluster), and
// done, so the commit, waits meanwhile.

// stallRetry is how often a stalled partition's record is tried again.
const stallRetry = 200 * time.Millisecond

// stallLogEvery bounds the stall warnings: one per partition per interval.
const stallLogEvery = 10 * time.Second

type topicPart struct {
	topic string
	part  int32
}

// stall is a partition stopped on a record the broker refused.
type stall struct {
	recs   []*kgo.Record // the refused record first, then those polled after it
	client string        // the session whose queue was full ("" for another failure)
	since  time.Time     // since when client stalls the partition
	logged time.Time
	next   time.Time // the next retry
}

// consumeState is one command consumer's partitions: the stalled ones and
// the last offset handed to us per partition.
type consumeState struct {
	cmd    *command
	stalls map[topicPart]*stall
	seen   map[topicPart]int64
	// over is, per partition, the session whose copies were last given up
	// past max_stall, and until when its next refusal is given up at once
	// (max_stall after that): a dead device costs one max_stall, not one
	// per poll.
	over map[topicPart]overMark

	mu      sync.Mutex
	revoked []topicPart // by the group, since the last poll
}

func newConsumeState(cmd *command) *consumeState {
	return &consumeState{cmd: cmd, stalls: map[topicPart]*stall{}, seen: map[topicPart]int64{}, over: map[topicPart]overMark{}}
}

type overMark struct {
	client string
	until  time.Time
}

// groupOpts tell st about partitions the group takes away.
func (st *consumeState) groupOpts() []kgo.Opt {
	lost := func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
		st.mu.Lock()
		defer st.mu.Unlock()
		for t, ps := range m {
			for _, p := range ps {
				st.revoked = append(st.revoked, topicPart{t, p})
			}
		}
	}
	return []kgo.Opt{kgo.OnPartitionsRevoked(lost), kgo.OnPartitionsLost(lost)}
}

// forgetRevoked drops what st holds for partitions the group took away:
// their next owner starts from the committed offset, the stalled record.
func (b *Bridge) forgetRevoked(cl *kgo.Client, st *consumeState) {
	st.mu.Lock()
	rev := st.revoked
	st.revoked = nil
	st.mu.Unlock()
	for _, tp := range rev {
		delete(st.seen, tp)
		delete(st.over, tp)
		if st.stalls[tp] != nil {
			delete(st.stalls, tp)
			st.cmd.stats.Stalled.Add(-1)
			cl.ResumeFetchPartitions(map[string][]int32{tp.topic: {tp.part}})
		}
	}
}

// pollWait is how long the next poll may wait: for ever (0: until ctx
// ends) unless a stalled partition is due for a retry by then.
func (st *consumeState) pollWait() time.Duration {
	if len(st.stalls) == 0 {
		return 0
	}
	d := stallRetry
	for _, s := range st.stalls {
		d = min(d, time.Until(s.next))
	}
	return max(d, time.Millisecond)
}

// result is one record's publish outcome.
type result struct {
	err    error
	fin    atomic.Bool // err is set
	bad    error       // the record cannot be mapped to an MQTT message
	forced bool        // published without the copy of the session past max_stall
}

// deliverAll publishes the records of the stalled partitions due for a
// retry again, and the new ones, in order per partition, waits until each is durably queued or refused,
// commits every partition up to its first record not delivered and stalls
// the partition on that record. It returns false when stopping.
func (b *Bridge) deliverAll(ctx context.Context, cl *kgo.Client, st *consumeState, pub Publisher, recs []*kgo.Record) bool {
	cmd := st.cmd
	var order []topicPart
	lists := map[topicPart][]*kgo.Record{}
	now := time.Now()
	for tp, s := range st.stalls {
		if !now.Before(s.next) { // due for a retry
			order = append(order, tp)
			lists[tp] = append([]*kgo.Record(nil), s.recs...)
		}
	}
	for _, r := range recs {
		tp := topicPart{r.Topic, r.Partition}
		if last, ok := st.seen[tp]; ok && r.Offset <= last {
			continue // already in hand (a stalled partition's records)
		}
		st.seen[tp] = r.Offset
		cmd.stats.Consumed.Add(1)
		if s := st.stalls[tp]; s != nil && lists[tp] == nil {
			s.recs = append(s.recs, r) // waits for the stall's retry
			continue
		}
		if _, ok := lists[tp]; !ok {
			order = append(order, tp)
		}
		lists[tp] = append(lists[tp], r)
	}
	var wg sync.WaitGroup
	results := map[topicPart][]result{}
	for _, tp := range order {
		list := lists[tp]
		res := make([]result, len(list))
		results[tp] = res
		over := st.pastMaxStall(tp, now)
		for i, r := range list {
			m, err := cmd.message(r)
			if err != nil {
				res[i].bad = err
				continue
			}
			m.AllOrNothing, m.Hold = true, cmd.hold()
			x := &res[i]
			publish := func() {
				wg.Add(1)
				pub.Publish(ctx, m, func(err error) {
					x.err = err
					x.fin.Store(true)
					wg.Done()
				})
			}
			publish()
			var qf *broker.QueueFullError
			if over != "" && x.fin.Load() && errors.As(x.err, &qf) && qf.ClientID == over {
				// Past max_stall: over loses its copy, the others get theirs.
				*m = broker.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Keep: true, Hold: cmd.hold()}
				x.err, x.forced = nil, true
				x.fin.Store(false)
				publish()
			}
			if x.fin.Load() && x.err != nil && !permanent(x.err) {
				break // refused at once: nothing after it may overtake it
			}
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false
	}
	var commit []*kgo.Record
	for _, tp := range order {
		list, res := lists[tp], results[tp]
		for i := range res {
			if res[i].fin.Load() && permanent(res[i].err) {
				res[i].bad, res[i].err = res[i].err, nil // skipped like an invalid record
			}
		}
		n, forced := 0, 0 // delivered prefix, of which published past max_stall
		for n < len(list) && res[n].err == nil && (res[n].fin.Load() || res[n].bad != nil) {
			if res[n].bad != nil {
				cmd.stats.Invalid.Add(1)
				r := list[n]
				b.log.Warn("kafka command: record skipped", "route", cmd.name, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", res[n].bad)
			} else {
				cmd.stats.Published.Add(1)
			}
			if res[n].forced {
				forced++
				cmd.stats.Undeliverable.Add(1)
			}
			n++
		}
		if forced > 0 {
			over := st.pastMaxStall(tp, now)
			st.over[tp] = overMark{client: over, until: time.Now().Add(cmd.maxStall)}
			b.log.Warn("kafka command: max_stall passed, commands committed without the copies of a full session",
				"route", cmd.name, "topic", tp.topic, "partition", tp.part, "client", over,
				"commands", forced, "max_stall", cmd.maxStall)
		}
		if n > 0 {
			commit = append(commit, list[n-1])
		}
		b.updateStall(cl, st, pub, tp, list, n, res)
	}
	if len(commit) > 0 {
		if err := cl.CommitRecords(ctx, commit...); err != nil {
			b.log.Warn("kafka command: commit", "route", cmd.name, "err", err)
		} else {
			cmd.stats.Committed.Add(1)
		}
	}
	return true
}

// hold is how long the cluster keeps a command for a node with matching
// subscribers that does not accept it in time (broker.Message.Hold): the
// command's max_stall, or without limit with max_stall 0. The publish's
// done, so the commit, waits meanwhile.
func (c *command) hold() time.Duration {
	if c.maxStall > 0 {
		return c.maxStall
	}
	return 100 * 365 * 24 * time.Hour
}

// pastMaxStall is the session that has stalled tp for its command's
// max_stall by now, or "".
func (st *consumeState) pastMaxStall(tp topicPart, now time.Time) string {
	if st.cmd.maxStall <= 0 {
		return ""
	}
	if s := st.stalls[tp]; s != nil && s.client != "" && now.Sub(s.since) >= st.cmd.maxStall {
		return s.client
	}
	if o, ok := st.over[tp]; ok && now.Before(o.until) {
		return o.client
	}
	delete(st.over, tp)
	return ""
}

// permanent says whether the broker refused a record for good (a topic
// it does not accept, such as one past max_topic_levels; retain where
// retain_available is false): retrying cannot change the answer, so the
// record is skipped and committed like one whose topic cannot be
// rendered. A full queue (broker.ErrQueueFull) or a store error stalls.
func permanent(err error) bool {
	var c packet.Code
	return err != nil && !errors.Is(err, broker.ErrQueueFull) && errors.As(err, &c)
}

// updateStall records that tp's list was delivered up to n: a partition
// that got through is resumed, one that did not is (or stays) stalled.
func (b *Bridge) updateStall(cl *kgo.Client, st *consumeState, pub Publisher, tp topicPart, list []*kgo.Record, n int, res []result) {
	cmd := st.cmd
	s := st.stalls[tp]
	if s != nil && n > 0 && s.client != "" {
		if h, ok := pub.(interface{ HasSession(string) bool }); ok && !h.HasSession(s.client) {
			// The session expired with this command waiting for it.
			cmd.stats.Undeliverable.Add(1)
			b.log.Warn("kafka command: session gone, command committed undelivered", "route", cmd.name,
				"topic", tp.topic, "partition", tp.part, "offset", s.recs[0].Offset, "client", s.client)
		}
	}
	if n == len(list) {
		if s != nil {
			delete(st.stalls, tp)
			cmd.stats.Stalled.Add(-1)
			cl.ResumeFetchPartitions(map[string][]int32{tp.topic: {tp.part}})
			b.log.Info("kafka command: partition resumed", "route", cmd.name, "topic", tp.topic,
				"partition", tp.part, "stalled", time.Since(s.since).Round(time.Millisecond))
		}
		return
	}
	err := res[n].err
	var qf *broker.QueueFullError
	client := ""
	if errors.As(err, &qf) {
		client = qf.ClientID
	}
	now := time.Now()
	if s == nil {
		s = &stall{since: now}
		st.stalls[tp] = s
		cmd.stats.Stalled.Add(1)
		cmd.stats.Stalls.Add(1)
		cl.PauseFetchPartitions(map[string][]int32{tp.topic: {tp.part}})
	}
	if client != s.client {
		s.since = now // another session stalls it now
	}
	s.recs, s.client, s.next = list[n:], client, now.Add(stallRetry)
	if now.Sub(s.logged) >= stallLogEvery {
		s.logged = now
		b.log.Warn("kafka command: partition stalled, record not committed", "route", cmd.name,
			"topic", tp.topic, "partition", tp.part, "offset", list[n].Offset, "client", client,
			"waiting", len(s.recs), "stalled", now.Sub(s.since).Round(time.Millisecond), "err", err)
	}
}
