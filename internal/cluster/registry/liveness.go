package registry

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// heartbeat says the node is alive every Heartbeat and, on the same tick,
// looks for nodes unheard of for DeadAfter.
func (r *Registry) heartbeat() {
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		r.sayAlive()
		r.sweep()
	}
}

// aliveMsg is a heartbeat.
type aliveMsg struct {
	Node string `json:"n"`
	Inc  string `json:"i"`
}

func (r *Registry) sayAlive() {
	v, _ := json.Marshal(aliveMsg{r.cfg.Node, r.inc})
	if err := r.nc.Publish(r.cfg.Prefix+".alive", v); err != nil && r.ctx.Err() == nil {
		r.log.Warn("cluster: heartbeat not sent", "err", err)
	}
}

// onAlive records another node's heartbeat.
func (r *Registry) onAlive(m *nats.Msg) {
	var a aliveMsg
	if json.Unmarshal(m.Data, &a) == nil && a.Node != "" {
		r.heard(a.Node, a.Inc)
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
	if !had || prev.inc != inc {
		r.sayAlive() // a newcomer learns of this node at once
	}
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

// Alive says whether node's incarnation inc is alive, as CONNECT's claims
// judge it (heard of within DeadAfter); true until the Registry is ready
// (it has not listened yet). A node not heard of since this one started
// is dead DeadAfter after that. The persistent sessions' store asks it
// about the nodes that saved records of connected clients.
func (r *Registry) Alive(node, inc string) bool {
	if !r.ready.Load() || node == r.cfg.Node && inc == r.inc {
		return true
	}
	return r.alive(node, inc)
}

// Incarnation is this run of the node: a random id chosen at New.
func (r *Registry) Incarnation() string { return r.inc }

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
	r.log.Warn("cluster: node is gone: its client ids are taken without asking it and its clients' wills will be published",
		"node", node, "dead_after", r.cfg.DeadAfter)
	r.mu.Lock()
	r.deadIncs[enc(node)+"."+inc] = time.Now()
	prefixes := make([]string, 0, len(r.deadIncs))
	for p := range r.deadIncs {
		prefixes = append(prefixes, p+".>")
	}
	r.mu.Unlock()
	r.async(func(context.Context) {
		// The cluster may be electing the wills' leader (the dead node
		// was a core): try again until the wills are dealt with.
		keys := r.willKeys(prefixes)
		r.pruneDead(prefixes, keys)
		for len(keys) > 0 {
			var again []string
			for _, k := range keys {
				if !r.elect(k) {
					again = append(again, k)
				}
			}
			if keys = again; len(keys) > 0 && !r.pause() {
				return
			}
		}
	})
}

// pruneDead forgets the dead incarnations among prefixes (as died lists
// them) that have no will left in keys: published or cancelled, nothing
// of theirs is to be competed for again.
func (r *Registry) pruneDead(prefixes, keys []string) {
	if keys == nil && r.ctx.Err() != nil {
		return // not listed
	}
	left := map[string]bool{}
	for _, k := range keys {
		if i := strings.LastIndexByte(k, '.'); i > 0 {
			left[k[:i]] = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range prefixes {
		if inc := strings.TrimSuffix(p, ".>"); !left[inc] {
			delete(r.deadIncs, inc)
		}
	}
}

// previousRuns treats the wills this node's earlier runs left (it was
// killed, or restarted) as those of a dead node: they are published once,
// by this node or another, even when no other node saw the restart (a
// cluster of one node, or of nodes that all restarted).
func (r *Registry) previousRuns() {
	incs := map[string]bool{}
	for _, k := range r.willKeys([]string{enc(r.cfg.Node) + ".>"}) {
		parts := strings.SplitN(k, ".", 3)
		if len(parts) == 3 && parts[1] != r.inc {
			incs[parts[1]] = true
		}
	}
	for inc := range incs {
		r.died(r.cfg.Node, inc)
	}
}

// willKeys lists the wills under prefixes, trying again while JetStream
// does not answer; nil once the Registry closes.
func (r *Registry) willKeys(prefixes []string) []string {
	for {
		ctx, cancel := r.opCtx(r.ctx)
		// A copy: the client library rewrites the filters it is given.
		l, err := r.wills.ListKeysFiltered(ctx, slices.Clone(prefixes)...)
		var keys []string
		if err == nil {
			for k := range l.Keys() {
				keys = append(keys, k)
			}
		}
		cancel()
		if err == nil {
			return keys
		}
		r.log.Warn("cluster: wills of a dead node not listed yet", "err", err, "filters", prefixes)
		if !r.pause() {
			return nil
		}
	}
}

// pause waits a heartbeat before an operation is tried again; false when
// the Registry closes.
func (r *Registry) pause() bool {
	select {
	case <-r.ctx.Done():
		return false
	case <-time.After(r.cfg.Heartbeat):
		return true
	}
}

// elect tries to become the node that publishes the will under key: a
// compare-and-set that names this node as its firer. The winner publishes
// it when due, unless the key changed since (its client came back).
func (r *Registry) elect(key string) (done bool) {
	won := false
	defer func() {
		if f := r.onElect; f != nil && done {
			f(won)
		}
	}()
	ctx, cancel := r.opCtx(r.ctx)
	defer cancel()
	e, err := r.wills.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true // published, or cancelled
	}
	if err != nil {
		return r.ctx.Err() != nil
	}
	var w willRecord
	if json.Unmarshal(e.Value(), &w) != nil {
		return true
	}
	mine := w.Firer == r.cfg.Node && w.FirerInc == r.inc
	if w.Firer != "" && !mine && r.alive(w.Firer, w.FirerInc) {
		return true // a live node has it
	}
	if f := r.beforeElect; f != nil {
		f()
	}
	w.Firer, w.FirerInc = r.cfg.Node, r.inc
	v, _ := json.Marshal(w)
	rev := e.Revision() // already won: an answer lost on the way
	if !mine {
		rev, err = r.updateWill(ctx, key, v, e.Revision())
	}
	if InFlight(err) {
		// Not a proof that the will changed (JetStream may keep a key
		// marked as written after the write is gone): read it again at
		// the next try.
		r.guard.Refused(r.wills.Bucket(), key, e.Revision())
		return r.ctx.Err() != nil
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true // another node won, or the client came back
	}
	if err != nil {
		return r.ctx.Err() != nil
	}
	r.guard.Done(r.wills.Bucket(), key)
	// The client may have come back meanwhile: its claim purges the will,
	// but a clustered JetStream checks a compare-and-set against what it
	// applied, and may accept this update after a purge it has not
	// applied yet (seen in CI). The claim comes before its purge: a read
	// of the id after this update sees it, or the purge removes the
	// update.
	if back, err := r.returned(ctx, key, w.ClientID); err != nil || back {
		if back {
			_ = r.purge(ctx, r.wills, key, rev)
		}
		return back || r.ctx.Err() != nil
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
	if _, ok := r.fires[key]; !ok && r.ctx.Err() == nil {
		r.fires[key] = time.AfterFunc(max(due, 0), func() { r.fire(key, rev, w.ClientID, w.Data) })
	}
	return true
}

// updateWill is the compare-and-set of a will's election (casFault first).
func (r *Registry) updateWill(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if h := r.casFault.Load(); h != nil {
		if err := (*h)(key); err != nil {
			return 0, err
		}
	}
	return r.wills.Update(ctx, key, v, rev)
}

// fire publishes an elected will if its key still holds what the election
// wrote.
func (r *Registry) fire(key string, rev uint64, clientID string, data []byte) {
	defer func() {
		r.mu.Lock()
		delete(r.fires, key)
		r.mu.Unlock()
	}()
	for {
		ctx, cancel := r.opCtx(r.ctx)
		back, err := r.returned(ctx, key, clientID)
		if err == nil {
			err = r.purge(ctx, r.wills, key, rev)
		}
		cancel()
		if back && err == nil {
			return // the client came back: the will is cancelled
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return // cancelled: the client came back
		}
		if err == nil {
			break
		}
		r.log.Warn("cluster: will of a dead node's client not published yet: the cluster does not answer",
			"key", key, "err", err)
		if !r.pause() {
			return
		}
	}
	if err := r.b.FireWill(data); err != nil {
		r.log.Warn("cluster: unreadable will of a dead node's client", "key", key, "err", err)
	}
}

// returned reports whether the client of the will under key (a dead
// node's incarnation's) holds its id again, there or elsewhere: its will
// is cancelled [MQTT-3.1.3-9]. Read at the ids' leader.
func (r *Registry) returned(ctx context.Context, key, clientID string) (bool, error) {
	_, val, err := r.readID(ctx, enc(clientID))
	if err != nil || val == nil {
		return false, err
	}
	var rec idRecord
	if json.Unmarshal(val, &rec) != nil {
		return false, nil
	}
	parts := strings.SplitN(key, ".", 3)
	return len(parts) == 3 && (enc(rec.Node) != parts[0] || rec.Inc != parts[1]), nil
}
