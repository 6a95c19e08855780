package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/eclipse/paho.golang/paho"
)

// TestHeldResentOnce: a held message (Message.Hold) whose first send is
// lost is not failed at ack_timeout but sent again; the receiving node
// gets that second send twice (a duplicate on the wire) and routes it
// once; the wait then succeeds. A message without Hold fails as before.
func TestHeldResentOnce(t *testing.T) {
	ns := startNodesWith(t, 2, func(c *config.Cluster) { c.AckTimeout = time.Second })
	a, b := ns[0], ns[1]
	got := make(chan string, 16)
	c := dialPahoRecv(t, b.addr, "dev", got)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n0 to learn cmd/#", func() bool { _, ok := a.peerFilters("n1")["cmd/#"]; return ok })
	rt := a.routeTo(t, "n1")
	var calls atomic.Int32
	a.r.setTestPublish(func(node string, batch []byte) error {
		switch calls.Add(1) {
		case 1:
			return nil // lost on the way
		case 2:
			a.r.nc.Publish(a.r.prefix+"msg."+node, batch) // and a duplicate of the resend
		}
		return a.r.nc.Publish(a.r.prefix+"msg."+node, batch)
	})
	held := make(ackRec, 1)
	rt.DeliverAck(&broker.Message{Topic: "cmd/held", Payload: []byte("h"), QoS: 1, Keep: true, Hold: time.Minute}, 1, held)
	if err := held.wait(t, "held message"); err != nil {
		t.Fatalf("held message: %v, want accepted", err)
	}
	if n := calls.Load(); n < 2 {
		t.Fatalf("%d sends, want the lost one sent again", n)
	}
	a.r.setTestPublish(func(node string, batch []byte) error {
		return a.r.nc.Publish(a.r.prefix+"msg."+node, batch)
	})
	marker := make(ackRec, 1)
	rt.DeliverAck(&broker.Message{Topic: "cmd/end", Payload: []byte("end"), QoS: 1}, 1, marker)
	if err := marker.wait(t, "marker"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for m := range got {
		if m == "end" {
			break
		}
		seen = append(seen, m)
	}
	if len(seen) != 1 || seen[0] != "h" {
		t.Errorf("subscriber got %v before the marker, want the held message once", seen)
	}

	// Without Hold, a lost send fails at ack_timeout.
	a.r.setTestPublish(func(string, []byte) error { return nil })
	plain := make(ackRec, 1)
	rt.DeliverAck(&broker.Message{Topic: "cmd/plain", QoS: 1, Keep: true}, 1, plain)
	if err := plain.wait(t, "plain message"); err == nil {
		t.Error("a lost message without Hold was acknowledged")
	}
}

func dialPahoRecv(t *testing.T, addr, id string, got chan<- string) *paho.Client {
	t.Helper()
	c := dialPahoWith(t, addr, id, func(cfg *paho.ClientConfig) {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- string(pr.Packet.Payload)
			return true, nil
		}}
	})
	return c
}
