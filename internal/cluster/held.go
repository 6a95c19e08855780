package cluster

import (
	"context"

	"github.com/culexmq/culex/internal/broker"
)

// Messages held for a node until it accepts them (broker.Message.Hold,
// the Kafka bridge's commands). The sender keeps the wait and sends the
// message again, under a new sequence but with the same onceID, when
// ack_timeout passes, when its route was full or its NATS publish failed,
// and when the node comes back after going silent (the same run of it
// heard again). The wait ends when the node accepts a copy, when a new
// run of the node is heard (known dead: accepted, as for any wait), when
// the message's Hold passes (it fails as it would have without Hold) or
// when the router closes. The receiver remembers the onceIDs it injected
// (the last dedupWindow of them) and acknowledges a second copy with the
// answer of the first instead of routing it again.

// dedupWindow bounds the held messages a node remembers having injected.
const dedupWindow = 1 << 14

type dedupKey struct {
	node string
	once onceID
}

// dedupState is a held message injected here: its answer once the broker
// gave it, and the sequences of the copies waiting for that answer.
type dedupState struct {
	done bool
	code byte
	seqs []uint64
}

// injectOnce routes a held message unless a copy of it was injected
// already; every copy is acknowledged with the answer of the first.
func (r *Router) injectOnce(m *broker.Message, seq uint64, sender string, once onceID) {
	k := dedupKey{sender, once}
	r.dedupMu.Lock()
	if st := r.dedup[k]; st != nil {
		if !st.done {
			st.seqs = append(st.seqs, seq)
			r.dedupMu.Unlock()
			return
		}
		code := st.code
		r.dedupMu.Unlock()
		r.ack(sender, seq, code)
		return
	}
	st := &dedupState{seqs: []uint64{seq}}
	r.dedup[k] = st
	if len(r.dedupRing) < dedupWindow {
		r.dedupRing = append(r.dedupRing, k)
	} else {
		delete(r.dedup, r.dedupRing[r.dedupNext])
		r.dedupRing[r.dedupNext] = k
		r.dedupNext = (r.dedupNext + 1) % dedupWindow
	}
	r.dedupMu.Unlock()
	r.b.Publish(context.Background(), m, func(err error) {
		code := errCode(err)
		r.dedupMu.Lock()
		st.done, st.code = true, code
		seqs := st.seqs
		st.seqs = nil
		r.dedupMu.Unlock()
		for _, s := range seqs {
			r.ack(sender, s, code)
		}
	})
}

// parkedNode is what a silent node's route held when it was dropped.
type parkedNode struct {
	epoch uint64
	ws    []waiter
}

// park keeps held waits of a node gone silent (or of a route that was
// released) until the node is heard again.
func (r *Router) park(node string, epoch uint64, ws []waiter) {
	r.parkMu.Lock()
	if r.closed.Load() {
		r.parkMu.Unlock()
		for _, w := range ws {
			w.ack.Done(ErrRemoteTimeout)
		}
		return
	}
	pn := r.parked[node]
	var dead []waiter
	if pn == nil || pn.epoch != epoch {
		if pn != nil {
			dead = pn.ws // held for an older run: a newer one was heard since
		}
		pn = &parkedNode{epoch: epoch}
		r.parked[node] = pn
	}
	pn.ws = append(pn.ws, ws...)
	n := len(pn.ws)
	r.parkMu.Unlock()
	for _, w := range dead {
		w.ack.Done(nil)
	}
	r.log.Warn("cluster: holding commands for a silent node until it is back or known dead", "node", node, "held", n)
	// The node may have been heard again meanwhile: its new peer's
	// unpark then came before these were parked.
	r.mu.Lock()
	p := r.peers[node]
	r.mu.Unlock()
	if p != nil {
		r.unpark(p)
	}
}

// unpark hands p's route what was held for p's node: sent again if it is
// the same run, done as accepted if a new run (the old one is known dead).
func (r *Router) unpark(p *peer) {
	r.parkMu.Lock()
	pn := r.parked[p.name]
	delete(r.parked, p.name)
	r.parkMu.Unlock()
	if pn == nil {
		return
	}
	if pn.epoch != p.epoch {
		for _, w := range pn.ws {
			w.ack.Done(nil)
		}
		return
	}
	r.log.Info("cluster: node back, held commands sent again", "node", p.name, "held", len(pn.ws))
	go func() { // not under onAnnounce: a full route fails nothing here, it waits for ack_timeout
		for _, w := range pn.ws {
			p.route.resend(w)
		}
	}()
}

// expireParked fails the held waits whose Hold passed (nodeGone: the
// node stayed silent), and on close (at 0: every one).
func (r *Router) expireParked(now int64) {
	var fail []waiter
	r.parkMu.Lock()
	for node, pn := range r.parked {
		keep := pn.ws[:0]
		for _, w := range pn.ws {
			if now == 0 || now >= w.hold.until {
				fail = append(fail, w)
			} else {
				keep = append(keep, w)
			}
		}
		pn.ws = keep
		if len(keep) == 0 {
			delete(r.parked, node)
		}
	}
	r.parkMu.Unlock()
	for _, w := range fail {
		if now == 0 {
			w.ack.Done(ErrRemoteTimeout)
		} else {
			w.ack.Done(ErrNodeGone)
		}
	}
}
