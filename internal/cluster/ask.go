package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// Subject of the admin API's requests between nodes, under the prefix:
//
//	admin.<node>   request: one node's admin API answers (JSON in, JSON out)

// DefaultAskTimeout bounds Ask when the context has no earlier deadline.
const DefaultAskTimeout = 2 * time.Second

// ServeAsk answers the requests other nodes send this node with Ask, each
// on a goroutine of its own. Stop it with the returned function.
func (r *Router) ServeAsk(handle func(req []byte) []byte) (stop func(), err error) {
	sub, err := r.nc.Subscribe(r.prefix+"admin."+r.node, func(msg *nats.Msg) {
		go msg.Respond(handle(msg.Data))
	})
	if err != nil {
		return nil, err
	}
	if err := r.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil
}

// Ask sends req to the named node, or to every other node the router
// knows when node is "", and waits for their answers until all came, ctx
// ends or DefaultAskTimeout passes. It returns the answers by node and the
// nodes that did not answer.
func (r *Router) Ask(ctx context.Context, node string, req []byte) (answers map[string][]byte, missing []string) {
	targets := r.Nodes()
	if node != "" {
		targets = []string{node}
	}
	answers = make(map[string][]byte, len(targets))
	if len(targets) == 0 {
		return answers, nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultAskTimeout)
	defer cancel()
	type reply struct {
		node string
		data []byte
		err  error
	}
	ch := make(chan reply, len(targets))
	for _, n := range targets {
		go func() {
			m, err := r.nc.RequestWithContext(ctx, r.prefix+"admin."+n, req)
			if err != nil {
				ch <- reply{node: n, err: err}
				return
			}
			ch <- reply{node: n, data: m.Data}
		}()
	}
	for range targets {
		a := <-ch
		if a.err != nil {
			missing = append(missing, a.node)
			continue
		}
		answers[a.node] = a.data
	}
	return answers, missing
}
