package cluster

import (
	"slices"

	"github.com/culexmq/culex/internal/broker"
)

// shEntry is one shared subscription (group, filter) of other nodes: the
// routes to the nodes with members, and the turn that rotates over them
// and, when it has members, this node.
type shEntry struct {
	routes []*nodeRoute
	turn   uint64 // under Router.shMu (write lock: SharedTurn advances it)
}

var _ broker.SharedRouter = (*Router)(nil)

func (r *Router) shAdd(rt *nodeRoute, group, filter string) {
	r.shMu.Lock()
	defer r.shMu.Unlock()
	e, ok := r.shIdx.Get(filter, group)
	if !ok {
		e = &shEntry{}
		r.shIdx.Subscribe(filter, group, e)
		r.shN.Add(1)
	}
	if !slices.Contains(e.routes, rt) {
		e.routes = append(e.routes, rt)
	}
}

func (r *Router) shRemove(rt *nodeRoute, group, filter string) {
	r.shMu.Lock()
	defer r.shMu.Unlock()
	e, ok := r.shIdx.Get(filter, group)
	if !ok {
		return
	}
	e.routes = slices.DeleteFunc(e.routes, func(x *nodeRoute) bool { return x == rt })
	if len(e.routes) == 0 {
		r.shIdx.Unsubscribe(filter, group)
		r.shN.Add(-1)
	}
}

// SharedTurn picks the node whose turn it is for (group, filter): the
// nodes with members take turns, this one included when local; nil means
// this node. It implements broker.SharedRouter.
func (r *Router) SharedTurn(group, filter string, local bool) broker.SharedRoute {
	r.shMu.Lock()
	defer r.shMu.Unlock()
	e, ok := r.shIdx.Get(filter, group)
	if !ok || len(e.routes) == 0 {
		return nil
	}
	n := uint64(len(e.routes))
	if local {
		n++
	}
	i := e.turn % n
	e.turn++
	if i == uint64(len(e.routes)) {
		return nil
	}
	return e.routes[i]
}

// MatchShared calls fn for the other nodes' shared subscriptions matching
// topic. It implements broker.SharedRouter.
func (r *Router) MatchShared(topic string, fn func(group, filter string)) {
	if r.shN.Load() == 0 {
		return // the broker asks for every message; most clusters have none
	}
	var found []broker.Share
	r.shMu.RLock()
	r.shIdx.Match(topic, func(filter, group string, _ *shEntry) {
		found = append(found, broker.Share{Group: group, Filter: filter})
	})
	r.shMu.RUnlock()
	for _, s := range found {
		fn(s.Group, s.Filter)
	}
}
