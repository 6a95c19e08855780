package cluster

import (
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
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
