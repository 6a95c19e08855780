package registry

import (
	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SetRetained implements broker.RetainedReplica: an asynchronous KV put, in
// the order of the node's writes.
func (r *Registry) SetRetained(m *broker.Message) {
	if !r.ready.Load() {
		r.log.Warn("cluster: retained message kept on this node only: not connected to the cluster yet", "topic", m.Topic)
		return
	}
	key := enc(m.Topic)
	if _, err := r.js.PublishAsync(r.retPre+key, broker.EncodeMessage(m)); err != nil {
		r.log.Warn("cluster: retained message not written to the cluster", "topic", m.Topic, "err", err)
	}
}

// DeleteRetained implements broker.RetainedReplica: an asynchronous KV
// delete.
func (r *Registry) DeleteRetained(topic string) {
	if !r.ready.Load() {
		return
	}
	msg := nats.NewMsg(r.retPre + enc(topic))
	msg.Header.Set("KV-Operation", "DEL")
	if _, err := r.js.PublishMsgAsync(msg); err != nil {
		r.log.Warn("cluster: retained message not cleared in the cluster", "topic", topic, "err", err)
	}
}

// watchRetained keeps the broker's retained messages those of the bucket:
// the first pass loads them (and clears those the node restored from its
// store that the cluster no longer has), then every change follows.
func (r *Registry) watchRetained(w jetstream.KeyWatcher, loaded chan<- struct{}) {
	initial := map[string]bool{}
	r.follow(w, func(e jetstream.KeyValueEntry) {
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
