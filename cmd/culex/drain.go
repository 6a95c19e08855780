package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/cluster"
)

const drainUsage = `
drain tells node NODE, over the cluster, to refuse new connections, report
not ready, and disconnect its clients at cluster.drain_rate per second
(the node's setting): v5 clients get DISCONNECT 0x9C with the Server
Reference HOST:PORT (--to, else the node's cluster.drain_server_reference)
or 0x8B without one; 3.1.1 clients are closed. The node stays up, drained,
until --undo (or a restart). SIGTERM drains a node the same way before it
stops.
`

// clusterDrain runs `culex cluster drain NODE [--undo] [--to HOST:PORT]
// [serve flags]`.
func clusterDrain(args []string, out io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return errors.New("cluster drain: the node's name comes first: culex cluster drain NODE [--undo] [--to HOST:PORT] [-c culex.yaml]")
	}
	node := args[0]
	var req cluster.DrainRequest
	var rest []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--undo" || a == "-undo":
			req.Undo = true
		case a == "--to" || a == "-to":
			if i+1 >= len(args) {
				return errors.New("cluster drain: --to needs HOST:PORT")
			}
			i++
			req.Reference = args[i]
		case strings.HasPrefix(a, "--to="):
			req.Reference = strings.TrimPrefix(a, "--to=")
		default:
			rest = append(rest, a)
		}
	}
	cfg, f, err := observe("drain", rest)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := cluster.SendDrain(ctx, f.Conn(), cfg.Cluster.Name, node, req)
	if err != nil {
		return fmt.Errorf("cluster drain %s: %w", node, err)
	}
	switch {
	case !rep.Draining:
		fmt.Fprintf(out, "%s: not draining; accepting connections (%d connected)\n", rep.Node, rep.Connections)
	case rep.Reference != "":
		fmt.Fprintf(out, "%s: draining %d connections at %d/s to %s\n", rep.Node, rep.Connections, rep.Rate, rep.Reference)
	default:
		fmt.Fprintf(out, "%s: draining %d connections at %d/s (no server reference: v5 clients get 0x8B)\n", rep.Node, rep.Connections, rep.Rate)
	}
	return nil
}
