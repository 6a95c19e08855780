package registry

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go/jetstream"
)

// TestWillElectedDespiteStuckInFlight: the wills bucket's leader refuses
// the survivor's election of a dead node's will with 10164 while the will
// is unchanged (as nats-server 2.15 did for one key until its leader
// changed). The survivor does not take that for another node's win (the
// will was lost: no one published it): it tries again, asks the leader
// to step down after StuckAfter, and publishes the will once.
func TestWillElectedDespiteStuckInFlight(t *testing.T) {
	nc := startNATS(t, 3)
	cfg := Config{Heartbeat: 200 * time.Millisecond, DeadAfter: time.Second, StuckAfter: 300 * time.Millisecond}
	nodes := startBrokers(t, nc, 2, cfg)
	a, b := nodes[0], nodes[1]
	sub, _ := dial(t, b.addr, "sub-b", dialOpts{clean: true})
	sub.sub(t, "will/#")
	sub.sub(t, "mark")
	dial(t, a.addr, "dev-1", dialOpts{clean: true, will: &paho.WillMessage{Topic: "will/dev-1", QoS: 1, Payload: []byte("gone")}})
	waitWill(t, a.r, "dev-1")
	bucket := b.r.cfg.Prefix + "_wills"
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	leader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return ""
		}
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			return ""
		}
		return info.Cluster.Leader
	}
	stuck := leader()
	if stuck == "" {
		t.Fatal("the wills bucket has no leader")
	}
	var refused atomic.Int32
	fault := func(string) error {
		if l := leader(); l == "" || l == stuck {
			refused.Add(1)
			api := &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}
			return fmt.Errorf("%w: %w", api, jetstream.ErrKeyRevisionMismatch) // as nats.go's KV Update
		}
		return nil
	}
	b.r.casFault.Store(&fault)
	a.knownBy(t, b)
	a.kill()
	if _, ok := sub.waitFor(t, "will/dev-1", e2eWait); !ok {
		t.Fatalf("the will was not published (%d elections refused, %d lost)", refused.Load(), b.lost.Load())
	}
	if refused.Load() == 0 {
		t.Fatal("no election was refused: the test's fault did not apply")
	}
	if b.r.guard.Stepdowns() == 0 {
		t.Fatal("no stepdown counted")
	}
	if l := leader(); l == stuck {
		t.Fatalf("the wills bucket's leader is still %s", l)
	}
	sub.pub(t, "mark", "m", false)
	if _, ok := sub.waitFor(t, "mark", e2eWait); !ok {
		t.Fatal("marker lost")
	}
	if n := sub.count("will/dev-1"); n != 1 {
		t.Fatalf("will published %d times, want once", n)
	}
}
