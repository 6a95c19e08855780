package registry

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestTakenFromDeadNodeWritesNoWillMarker: clients of a node that died
// come back on another node without clean start (a reconnect storm).
// The one that had a will gets it cancelled [MQTT-3.1.3-9]: its record
// is purged. The one that had none leaves nothing in the wills' bucket
// (it used to get a delete marker, a replicated write on its CONNECT
// path that the bucket keeps).
func TestTakenFromDeadNodeWritesNoWillMarker(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second})
	a, b := nodes[0], nodes[1]
	dial(t, a.addr, "no-will", dialOpts{})
	w := &paho.WillMessage{Topic: "will/with-will", QoS: 1, Payload: []byte("gone")}
	dial(t, a.addr, "with-will", dialOpts{will: w, delay: 60})
	a.knownBy(t, b)
	a.kill()
	deadline := time.Now().Add(e2eWait)
	for b.r.alive(a.name, a.r.inc) {
		if time.Now().After(deadline) {
			t.Fatal("node a never seen dead")
		}
		time.Sleep(20 * time.Millisecond) // polling the liveness
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	bucket := b.r.cfg.Prefix + "_wills"
	for _, id := range []string{"no-will", "with-will"} {
		if _, ack := dial(t, b.addr, id, dialOpts{}); ack.ReasonCode != 0 {
			t.Fatalf("%s on node b: CONNACK %#x", id, ack.ReasonCode)
		}
	}
	deadline = time.Now().Add(e2eWait)
	// Node b's election of the will may overlap the client's return: it
	// purges what it wrote once it sees the client back.
	for {
		rev, val, err := ReadLast(ctx, b.nc, bucket, willKey(a.name, a.r.inc, "with-will"))
		if err == nil && val == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the will of the client back on node b: revision %d, value %q, %v; want it purged", rev, val, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the bucket
	}
	rev, val, err := ReadLast(ctx, b.nc, bucket, willKey(a.name, a.r.inc, "no-will"))
	if err != nil || rev != 0 {
		t.Errorf("the client without a will left revision %d (value %q, %v) in %s, want none", rev, val, err, bucket)
	}
}

// TestWillElectedWhileClientReturnsIsRemoved: a survivor's election of a
// dead node's will is written after the client came back and its claim
// left the will (a replicated JetStream may accept the election's
// compare-and-set after the returning client's delete: it checks against
// what it applied). The survivor sees the client holding its id again and
// removes the will instead of publishing it.
func TestWillElectedWhileClientReturnsIsRemoved(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second})
	a, b := nodes[0], nodes[1]
	w := &paho.WillMessage{Topic: "will/back", QoS: 1, Payload: []byte("gone")}
	dial(t, a.addr, "back", dialOpts{will: w, delay: 60})
	reached, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.r.beforeElect = func() {
		once.Do(func() { close(reached) })
		select {
		case <-proceed:
		case <-time.After(e2eWait):
		}
	}
	b.r.keepDeadWill.Store(true)
	a.knownBy(t, b)
	a.kill()
	select {
	case <-reached:
	case <-time.After(e2eWait):
		t.Fatal("node b never elected the will of node a's client")
	}
	if _, ack := dial(t, b.addr, "back", dialOpts{}); ack.ReasonCode != 0 {
		t.Fatalf("back on node b: CONNACK %#x", ack.ReasonCode)
	}
	close(proceed)
	deadline := time.Now().Add(e2eWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rev, val, err := ReadLast(ctx, b.nc, b.r.cfg.Prefix+"_wills", willKey(a.name, a.r.inc, "back"))
		cancel()
		if err == nil && val == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the will of the client back on node b: revision %d, value %q, %v; want it removed", rev, val, err)
		}
		time.Sleep(20 * time.Millisecond) // polling the bucket
	}
	if n := b.fired.Load(); n != 0 {
		t.Errorf("node b won %d elections of the will of a client that came back", n)
	}
}
