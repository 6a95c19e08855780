package registry

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/culexmq/culex/internal/broker"
	"github.com/nats-io/nats.go/jetstream"
)

// willChain is this node's operations on one of its clients' wills, done
// in the order the broker asked for them, each on its own goroutine once
// the previous one ended: the broker asks under its locks (the client id's,
// at CONNECT) and must not wait for JetStream.
type willChain struct {
	last chan struct{} // closed when the last operation queued ends
	// Written by the operations only, one after the other:
	token uint64 // the last PutWill's token; 0 once it was taken or dropped
	rev   uint64 // the revision of the record this node stored; 0: none
}

func willKey(node, inc, id string) string { return enc(node) + "." + inc + "." + enc(id) }

// willOp queues fn on the chain of clientID's will; false when the
// Registry is closed.
func (r *Registry) willOp(clientID string, fn func(ctx context.Context, key string, ch *willChain)) bool {
	key := willKey(r.cfg.Node, r.inc, clientID)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	ch := r.willCh[key]
	if ch == nil {
		ch = &willChain{last: make(chan struct{})}
		close(ch.last)
		r.willCh[key] = ch
	}
	prev, done := ch.last, make(chan struct{})
	ch.last = done
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		<-prev // ends soon once the Registry closes: its context is done
		fn(r.ctx, key, ch)
		r.mu.Lock()
		if ch.last == done && ch.token == 0 {
			delete(r.willCh, key) // no will, nothing queued
		}
		close(done)
		r.mu.Unlock()
	}()
	return true
}

// writeWill runs the test hook, then op with an operation's deadline.
func (r *Registry) writeWill(ctx context.Context, op func(ctx context.Context) error) error {
	if h := r.willFault.Load(); h != nil {
		if err := (*h)(); err != nil {
			return err
		}
	}
	ctx, cancel := r.opCtx(ctx)
	defer cancel()
	return op(ctx)
}

// PutWill implements broker.Registry: the record is written in the
// background, and the token returned names it for TakeWill and DropWill.
func (r *Registry) PutWill(w *broker.ClusterWill) (uint64, <-chan struct{}) {
	stored := make(chan struct{})
	if !r.ready.Load() {
		close(stored)
		return 0, stored
	}
	v, _ := json.Marshal(willRecord{ClientID: w.ClientID, Delay: w.Delay, Deadline: w.Deadline, Data: w.Data})
	token := r.willSeq.Add(1)
	id := w.ClientID
	if !r.willOp(id, func(ctx context.Context, key string, ch *willChain) {
		defer close(stored)
		ch.token = token
		err := r.writeWill(ctx, func(ctx context.Context) error {
			rev, err := r.wills.Put(ctx, key, v)
			if err == nil {
				ch.rev = rev
			}
			return err
		})
		if err != nil {
			// The record stored before, if any, stays this will's.
			r.log.Warn("cluster: will not stored in the cluster: it is lost if this node dies",
				"client_id", id, "err", err)
		}
	}) {
		close(stored)
		return 0, stored
	}
	return token, stored
}

// TakeWill implements broker.Registry: a compare-and-set delete, in the
// background, after the will's earlier operations. While the cluster
// cannot be reached it is tried again every heartbeat, until it succeeds
// (publish is called) or finds the record changed (a survivor that saw
// this node dead took it, or a later will replaced it: not published
// here): the will is published once, and never lost while this node
// lives.
func (r *Registry) TakeWill(clientID string, token uint64, publish func()) {
	r.willOp(clientID, func(ctx context.Context, key string, ch *willChain) {
		if ch.token != token {
			// A later will of this node overwrote its record (a CONNECT
			// stores its will before it takes the id over): no other node
			// can publish this one.
			publish()
			return
		}
		ch.token = 0
		for ch.rev != 0 {
			err := r.writeWill(ctx, func(ctx context.Context) error {
				return r.purge(ctx, r.wills, key, ch.rev)
			})
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				ch.rev = 0
				r.log.Info("will not published here: another node took it", "client_id", clientID)
				return
			}
			if err == nil {
				break
			}
			r.log.Warn("cluster: will not published yet: the cluster does not answer; trying again",
				"client_id", clientID, "err", err)
			if !r.pause() {
				return
			}
		}
		ch.rev = 0
		publish()
	})
}

// DropWill implements broker.Registry: a compare-and-set delete, in the
// background.
func (r *Registry) DropWill(clientID string, token uint64) {
	r.willOp(clientID, func(ctx context.Context, key string, ch *willChain) {
		if ch.token != token {
			return
		}
		ch.token = 0
		if ch.rev == 0 {
			return
		}
		err := r.writeWill(ctx, func(ctx context.Context) error {
			return r.purge(ctx, r.wills, key, ch.rev)
		})
		if err == nil || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			ch.rev = 0
		}
	})
}
