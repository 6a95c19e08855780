package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaCommandsToFrozenNode: the node that consumes the (one)
// command partition forwards commands to a device on a node frozen with
// SIGSTOP. The node goes silent (node_timeout) and stays frozen past
// ack_timeout: its commands are not given up, the offset is not
// committed while it is frozen (the partition waits), and once it resumes
// its device gets every command exactly once and in order, the devices on
// the two other nodes get each of theirs once and in order, and the
// offset is committed.
func TestKafkaCommandsToFrozenNode(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0),
		kfake.SeedTopics(1, "telemetry"), kfake.SeedTopics(1, "device-commands"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	brokers := kc.ListenAddrs()[0]
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: fmt.Sprintf(kafkaExtra, brokers),
		ClusterExtra: "node_timeout: 1s\nack_timeout: 2s"})
	kcl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kcl.Close)
	adm := kadm.NewClient(kcl)
	ctx, cancel := context.WithTimeout(context.Background(), 6*waitTimeout)
	defer cancel()

	// The node that consumes the partition.
	byID := map[string]*clustertest.Node{}
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(n.DataDir, config.GroupInstanceIDFile))
		if err != nil {
			t.Fatal(err)
		}
		byID[strings.TrimSpace(string(b))] = n
	}
	var a *clustertest.Node
	for a == nil {
		gs, err := adm.DescribeGroups(ctx, "culex-commands")
		g := gs["culex-commands"]
		if err == nil && g.State == "Stable" && len(g.Members) == 3 {
			for _, m := range g.Members {
				if ca, ok := m.Assigned.AsConsumer(); ok && m.InstanceID != nil && len(ca.Topics) > 0 && len(ca.Topics[0].Partitions) > 0 {
					a = byID[*m.InstanceID]
				}
			}
		}
		if a == nil && ctx.Err() != nil {
			t.Fatalf("group culex-commands: %+v (%v), want 3 stable members, one consuming", g, err)
		}
		if a == nil {
			time.Sleep(50 * time.Millisecond) // poll
		}
	}
	var b, cc *clustertest.Node
	for _, n := range c.Nodes {
		switch {
		case n == a:
		case b == nil:
			b = n
		default:
			cc = n
		}
	}
	devs := map[string]*v5{"dev-a": dialV5(t, a.MQTT(), "dev-a"), "dev-b": dialV5(t, b.MQTT(), "dev-b"), "dev-c": dialV5(t, cc.MQTT(), "dev-c")}
	for key, d := range devs {
		d.sub("devices/"+key+"/commands", 1, 0, false)
	}
	produce := func(key, value string) {
		t.Helper()
		r := &kgo.Record{Topic: "device-commands", Key: []byte(key), Value: []byte(value)}
		if err := kcl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Every device is routed to: a first command each, delivered.
	for key, d := range devs {
		produce(key, key+"-ready")
		recvUntil(t, key, d.msgs, key+"-ready")
	}

	b.Signal(clustertest.Freeze)
	frozen := true
	t.Cleanup(func() {
		if frozen {
			b.Signal(clustertest.Thaw)
		}
	})
	const n = 5
	for i := range n {
		for _, key := range []string{"dev-a", "dev-b", "dev-c"} {
			produce(key, fmt.Sprintf("%s-%d", key, i))
		}
	}
	// b is seen gone and the consuming node holds its commands (before
	// the fix: skipped and committed).
	a.WaitLog(regexp.MustCompile(`node gone.*` + regexp.QuoteMeta(b.Name)))
	a.WaitLog(regexp.MustCompile(`holding commands for a silent node|record skipped`))
	end, err := adm.ListEndOffsets(ctx, "device-commands")
	if err != nil {
		t.Fatal(err)
	}
	last, _ := end.Lookup("device-commands", 0)
	committed := func() int64 {
		os, err := adm.FetchOffsets(ctx, "culex-commands")
		if err != nil {
			return -1
		}
		o, ok := os.Lookup("device-commands", 0)
		if !ok {
			return -1
		}
		return o.At
	}
	if got := committed(); got >= last.Offset {
		t.Fatalf("committed offset %d with node %s frozen, want below %d (its commands not accepted)", got, b.Name, last.Offset)
	}

	b.Signal(clustertest.Thaw)
	frozen = false
	// Every device gets each of its commands once, in order (the
	// partition waited for b: the commands behind b's follow it).
	for key, d := range devs {
		for i := range n {
			select {
			case m := <-d.msgs:
				if want := fmt.Sprintf("%s-%d", key, i); m.Payload != want {
					t.Fatalf("%s got %q, want %q (each command once, in order)", key, m.Payload, want)
				}
			case <-ctx.Done():
				t.Fatalf("%s: %d of %d commands after node %s resumed", key, i, n, b.Name)
			}
		}
	}
	for committed() < last.Offset {
		if ctx.Err() != nil {
			t.Fatalf("committed offset %d, want %d once the node accepted the commands", committed(), last.Offset)
		}
		time.Sleep(50 * time.Millisecond) // poll
	}
	// Nothing twice: a marker after the commands ends each device's check.
	for key, d := range devs {
		produce(key, key+"-end")
		got := recvUntil(t, key, d.msgs, key+"-end")
		if len(got) != 0 {
			t.Errorf("%s got %v after its commands, want only the marker (no second copy)", key, got)
		}
	}
}
