package registry

import (
	"context"
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
