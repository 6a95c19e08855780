package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/culexmq/culex/internal/cluster"
	"github.com/culexmq/culex/internal/cluster/fabric"
	"github.com/culexmq/culex/internal/config"
)

const clusterUsage = `Usage:
  culex cluster status [-c culex.yaml] [serve flags]
  culex cluster drain NODE [--undo] [--to HOST:PORT] [-c culex.yaml] [serve flags]

status joins the cluster named by the config (cluster.peers and
cluster.listen, or cluster.nats_url, with cluster.secret or cluster.tls)
for a moment and prints every node's answer: role, cluster address,
MQTT connections, uptime, the JetStream meta leader and readiness.
` + drainUsage

func clusterCmd(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(clusterUsage)
		return nil
	}
	switch args[0] {
	case "status":
		return clusterStatus(args[1:], os.Stdout)
	case "drain":
		return clusterDrain(args[1:], os.Stdout) // drain.go
	}
	return fmt.Errorf("cluster: unknown command %q\n\n%s", args[0], clusterUsage)
}

// observe loads the config of `culex cluster <cmd>` and joins its cluster
// as an observer.
func observe(cmd string, args []string) (config.Config, *fabric.Fabric, error) {
	cfg, err := config.Parse("culex cluster "+cmd, args, os.Environ(), os.Stderr)
	if err != nil {
		return config.Config{}, nil, err
	}
	if !cfg.Cluster.Enabled() {
		return config.Config{}, nil, fmt.Errorf("cluster %s: the config has no cluster (cluster.listen or cluster.nats_url)", cmd)
	}
	f, err := fabric.Observe(cfg.Cluster, 10*time.Second)
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, f, nil
}

func clusterStatus(args []string, out io.Writer) error {
	cfg, f, err := observe("status", args)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sts, err := cluster.Gather(ctx, f.Conn(), cfg.Cluster.Name, 2*time.Second)
	if err != nil {
		return err
	}
	if len(sts) == 0 {
		return errors.New("cluster status: no node answered")
	}
	return printStatus(out, sts, time.Now())
}

func printStatus(out io.Writer, sts []cluster.Status, now time.Time) error {
	leaders := map[string]int{}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tCONNECTIONS\tUPTIME\tROUTES\tSEES\tREADY")
	for _, s := range sts {
		if s.MetaLeader != "" {
			leaders[s.MetaLeader]++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", s.Node, s.Role, s.Address, s.Connections,
			now.Sub(s.Started).Round(time.Second), s.Routes, len(s.Peers), s.Ready)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var ls []string
	for l := range leaders {
		ls = append(ls, l)
	}
	switch len(ls) {
	case 0:
		fmt.Fprintln(out, "leader: none (no JetStream meta leader elected)")
	case 1:
		fmt.Fprintf(out, "leader: %s (JetStream meta leader)\n", ls[0])
	default:
		fmt.Fprintf(out, "leader: cores disagree: %s\n", strings.Join(ls, ", "))
	}
	return nil
}
