package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// heartbeat writes the node's key every Heartbeat and, on the same tick,
// looks for nodes unheard of for DeadAfter.
func (r *Registry) heartbeat() {
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	key := enc(r.cfg.Node)
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Heartbeat)
		if _, err := r.nodes.Put(ctx, key, r.nodeValue()); err != nil && r.ctx.Err() == nil {
			r.log.Warn("cluster: heartbeat not written", "err", err)
		}
		cancel()
		r.sweep()
	}
}

// watchNodes follows the heartbeats of every node.
func (r *Registry) watchNodes(w jetstream.KeyWatcher) {
	r.follow(w, func(e jetstream.KeyValueEntry) {
		if e == nil || e.Operation() != jetstream.KeyValuePut {
			return
		}
		if name, err := base64.RawURLEncoding.DecodeString(e.Key()); err == nil {
			r.heard(string(name), string(e.Value()))
		}
	})
}

// follow hands each update of w to fn (nil: the initial values are all
// delivered) until the Registry closes.
func (r *Registry) follow(w jetstream.KeyWatcher, fn func(jetstream.KeyValueEntry)) {
	defer w.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			fn(e)
		}
	}
}

// heard records a heartbeat of node's incarnation inc. A new incarnation
// (the node restarted) ends the previous one at once.
func (r *Registry) heard(node, inc string) {
	r.mu.Lock()
	prev, had := r.seen[node]
	r.seen[node] = nodeSeen{inc: inc, at: time.Now()}
	restarted := had && prev.inc != inc && !prev.dead
	r.mu.Unlock()
	if restarted && node != r.cfg.Node {
		r.died(node, prev.inc)
	}
}

// alive says whether node's incarnation inc is alive: heard of within
// DeadAfter. A node not heard of at all since this one started watching
// is given DeadAfter to show up.
func (r *Registry) alive(node, inc string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.seen[node]
	if !ok {
		return time.Since(r.watchAt) < r.cfg.DeadAfter
	}
	return s.inc == inc && !s.dead && time.Since(s.at) < r.cfg.DeadAfter
}

// sweep finds the nodes that went silent.
func (r *Registry) sweep() {
	var gone []nodeSeen
	var names []string
	r.mu.Lock()
	for n, s := range r.seen {
		if n != r.cfg.Node && !s.dead && time.Since(s.at) >= r.cfg.DeadAfter {
			s.dead = true
			r.seen[n] = s
			gone = append(gone, s)
			names = append(names, n)
		}
	}
	r.mu.Unlock()
	for i, s := range gone {
		r.died(names[i], s.inc)
	}
}

// died handles the death of node's incarnation inc: its client ids are
// free (claims no longer ask it), and this node competes for each of its
// clients' wills, and for those of earlier dead nodes whose elected firer
// is dead too.
func (r *Registry) died(node, inc string) {
	r.log.Warn("cluster: node is gone: its client ids are free and its clients' wills will be published",
		"node", node, "dead_after", r.cfg.DeadAfter)
	r.mu.Lock()
	r.deadIncs[enc(node)+"."+inc] = time.Now()
	prefixes := make([]string, 0, len(r.deadIncs))
	for p := range r.deadIncs {
		prefixes = append(prefixes, p+".>")
	}
	r.mu.Unlock()
	r.async(func(ctx context.Context) {
		l, err := r.wills.ListKeysFiltered(ctx, prefixes...)
		if err != nil {
			r.log.Warn("cluster: wills of a dead node not listed", "node", node, "err", err)
			return
		}
		for k := range l.Keys() {
			r.elect(ctx, k)
		}
	})
}

// elect tries to become the node that publishes the will under key: a
// compare-and-set that names this node as its firer. The winner publishes
// it when due, unless the key changed since (its client came back).
func (r *Registry) elect(ctx context.Context, key string) {
	won := false
	if f := r.onElect; f != nil {
		defer func() { f(won) }()
	}
	e, err := r.wills.Get(ctx, key)
	if err != nil {
		return
	}
	var w willRecord
	if json.Unmarshal(e.Value(), &w) != nil {
		return
	}
	if w.Firer != "" && r.alive(w.Firer, w.FirerInc) {
		return // a live node has it
	}
	if f := r.beforeElect; f != nil {
		f()
	}
	w.Firer, w.FirerInc = r.cfg.Node, r.inc
	v, _ := json.Marshal(w)
	rev, err := r.wills.Update(ctx, key, v, e.Revision())
	if err != nil {
		return // another node won, or the client came back
	}
	due := time.Until(time.Unix(0, w.Deadline))
	if w.Deadline == 0 {
		due = w.Delay // from the death's discovery: never early
	}
	r.log.Info("cluster: publishing the will of a client of a dead node", "client_id", w.ClientID, "key", key, "rev", rev, "prev", e.Revision(),
		"in", max(due, 0))
	won = true
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return
	}
	r.fires[key] = time.AfterFunc(max(due, 0), func() { r.fire(key, rev, w.Data) })
}

// fire publishes an elected will if its key still holds what the election
// wrote.
func (r *Registry) fire(key string, rev uint64, data []byte) {
	r.mu.Lock()
	delete(r.fires, key)
	r.mu.Unlock()
	ctx, cancel := r.opCtx(r.ctx)
	defer cancel()
	err := r.wills.Delete(ctx, key, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return // cancelled: the client came back
	}
	if err != nil {
		r.log.Warn("cluster: will of a dead node's client not published: the cluster is unreachable",
			"key", key, "err", err)
		return
	}
	if err := r.b.FireWill(data); err != nil {
		r.log.Warn("cluster: unreadable will of a dead node's client", "key", key, "err", err)
	}
}
