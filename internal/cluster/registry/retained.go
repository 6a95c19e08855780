package registry

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retQueueMax bounds the retained writes waiting for the cluster; beyond
// it a write is dropped (counted and logged) and its message stays on its
// node.
const retQueueMax = 1 << 16

// retQueue is the node's retained writes, in order, for the one goroutine
// that writes them to the bucket: the broker calls SetRetained and
// DeleteRetained under its retained lock, which must not wait for NATS.
type retQueue struct {
	mu      sync.Mutex
	ops     []*nats.Msg
	wake    chan struct{}
	dropped atomic.Uint64 // writes refused: the queue was full
	failed  atomic.Uint64 // writes the cluster refused or did not confirm (tried again)
}

// SetRetained implements broker.RetainedReplica: a KV put, queued in the
// order of the node's writes.
func (r *Registry) SetRetained(m *broker.Message) {
	if !r.ready.Load() {
		r.log.Warn("cluster: retained message kept on this node only: not connected to the cluster yet", "topic", m.Topic)
		return
	}
	msg := nats.NewMsg(r.retPre + enc(m.Topic))
	msg.Data = broker.EncodeMessage(m)
	r.queueRetained(msg, m.Topic)
}

// DeleteRetained implements broker.RetainedReplica: a KV delete, queued.
func (r *Registry) DeleteRetained(topic string) {
	if !r.ready.Load() {
		return
	}
	msg := nats.NewMsg(r.retPre + enc(topic))
	msg.Header.Set("KV-Operation", "DEL")
	r.queueRetained(msg, topic)
}

func (r *Registry) queueRetained(msg *nats.Msg, topic string) {
	q := &r.retQ
	q.mu.Lock()
	full := len(q.ops) >= retQueueMax
	if !full {
		q.ops = append(q.ops, msg)
	}
	q.mu.Unlock()
	if full {
		if n := q.dropped.Add(1); n&(n-1) == 0 {
			r.log.Warn("cluster: retained message kept on this node only: too many writes wait for the cluster",
				"topic", topic, "waiting", retQueueMax, "dropped", n)
		}
		return
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// writeRetained writes the queued retained changes to the bucket, in
// order, until the Registry closes: a batch is published asynchronously
// and its acknowledgements checked; from the first write that failed, the
// batch is written again (later writes of the same topic must stay later)
// after a heartbeat.
func (r *Registry) writeRetained() {
	q := &r.retQ
	var batch []*nats.Msg
	for {
		if len(batch) == 0 {
			q.mu.Lock()
			n := min(len(q.ops), 256)
			batch = append(batch, q.ops[:n]...)
			q.ops = q.ops[n:]
			if len(q.ops) == 0 {
				q.ops = nil
			}
			q.mu.Unlock()
		}
		if len(batch) == 0 {
			select {
			case <-r.ctx.Done():
				return
			case <-q.wake:
			}
			continue
		}
		done := r.publishRetained(batch)
		if done == len(batch) {
			batch = batch[:0]
			continue
		}
		batch = batch[done:]
		if n := q.failed.Add(1); n&(n-1) == 0 {
			r.log.Warn("cluster: retained message not written to the cluster yet: trying again",
				"subject", batch[0].Subject, "failures", n)
		}
		if !r.pause() {
			return
		}
	}
}

// publishRetained publishes batch and returns how many of its first
// writes the cluster confirmed.
func (r *Registry) publishRetained(batch []*nats.Msg) int {
	futs := make([]jetstream.PubAckFuture, 0, len(batch))
	for _, m := range batch {
		var err error
		if h := r.retFault.Load(); h != nil {
			err = (*h)()
		}
		var f jetstream.PubAckFuture
		if err == nil {
			f, err = r.js.PublishMsgAsync(m)
		}
		if err != nil {
			break
		}
		futs = append(futs, f)
	}
	timeout := time.NewTimer(r.cfg.Timeout)
	defer timeout.Stop()
	for i, f := range futs {
		select {
		case <-f.Ok():
		case <-f.Err():
			return i
		case <-timeout.C:
			return i
		case <-r.ctx.Done():
			return i
		}
	}
	return len(futs)
}

// watchRetained keeps the broker's retained messages those of the bucket:
// the first pass loads them (and clears those the node restored from its
// store that the cluster no longer has), then every change follows.
func (r *Registry) watchRetained(w jetstream.KeyWatcher, loaded chan<- struct{}) {
	initial := map[string]bool{}
	Follow(r.ctx, w, func(e jetstream.KeyValueEntry) {
		switch {
		case e != nil:
			r.applyRetained(e, initial)
		case initial != nil:
			keep := initial
			r.b.PruneRetained(func(t string) bool { return keep[t] })
			initial = nil
			close(loaded)
		}
	})
}

// applyRetained applies one change of the bucket; initial, during the first
// pass, collects the topics seen.
func (r *Registry) applyRetained(e jetstream.KeyValueEntry, initial map[string]bool) {
	if e.Operation() != jetstream.KeyValuePut {
		r.mu.Lock()
		t, ok := r.hashed[e.Key()]
		delete(r.hashed, e.Key())
		r.mu.Unlock()
		if !ok {
			t, ok = decKey(e.Key())
		}
		if ok {
			r.b.ApplyRetained(&broker.Message{Topic: t})
		}
		return
	}
	m, err := broker.DecodeMessage(e.Value())
	if err != nil {
		r.log.Warn("cluster: unreadable retained message", "key", e.Key(), "err", err)
		return
	}
	if e.Key()[0] == '=' {
		r.mu.Lock()
		r.hashed[e.Key()] = m.Topic
		r.mu.Unlock()
	}
	if initial != nil {
		initial[m.Topic] = true
	}
	m.Retain = true
	r.b.ApplyRetained(m)
}
