package cluster

import (
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/topic"
	"github.com/nats-io/nats.go"
)

// TestSharedAnswersAfterStopDoNotBlock: shared copies that arrive while
// the router stops (its answer loop gone) are answered without blocking
// the caller, however many there are: their callbacks run on the broker's
// delivery paths, some under a session's lock.
func TestSharedAnswersAfterStopDoNotBlock(t *testing.T) {
	n := startNodes(t, 1)[0]
	n.r.Close()
	share := broker.Share{Group: "g", Filter: "t/#"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 10000 {
			body := encodeMsg(nil, &broker.Message{Topic: "t/x", QoS: 1, Payload: []byte("x")}, 1, uint64(i+1), "other", time.Now().UnixNano(), &share, onceID{})
			n.r.onShared(&nats.Msg{Data: body})
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("onShared blocked after the router stopped")
	}
}

// TestMatchSharedCountsEntries: MatchShared, which skips the index while
// no other node has a shared subscription, finds what shAdd added until
// shRemove removed its last route.
func TestMatchSharedCountsEntries(t *testing.T) {
	r := &Router{shIdx: topic.NewIndex[string, *shEntry]()}
	a, b := &nodeRoute{name: "a"}, &nodeRoute{name: "b"}
	match := func() (got []string) {
		r.MatchShared("s/1", func(group, filter string) { got = append(got, group+" "+filter) })
		return got
	}
	if got := match(); got != nil {
		t.Fatalf("no shared subscriptions: matched %v", got)
	}
	r.shAdd(a, "g", "s/+")
	r.shAdd(b, "g", "s/+")
	r.shAdd(a, "h", "s/#")
	if got := match(); len(got) != 2 {
		t.Fatalf("matched %v, want g s/+ and h s/#", got)
	}
	r.shRemove(a, "g", "s/+")
	r.shRemove(a, "h", "s/#")
	if got := match(); len(got) != 1 || got[0] != "g s/+" {
		t.Fatalf("matched %v, want g s/+ (b's)", got)
	}
	r.shRemove(b, "g", "s/+")
	r.shRemove(b, "g", "s/+") // gone already
	if got, n := match(), r.shN.Load(); got != nil || n != 0 {
		t.Fatalf("all removed: matched %v, %d entries counted", got, n)
	}
}
