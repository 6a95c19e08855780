package broker

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// holdNode is a fake node whose store counts the holds of its reader
// (ReaderHolder); its reader runs anyway.
type holdNode struct {
	*fakeNode
	t     testing.TB
	holds atomic.Int64
}

func (n *holdNode) HoldReader(context.Context) error { n.holds.Add(1); return nil }

func (n *holdNode) ReleaseReader() {
	if n.holds.Add(-1) < 0 {
		n.t.Error("the reader released more often than held")
	}
}

// holds waits for n's holds to be want.
func (n *holdNode) want(want int64, what string) {
	n.t.Helper()
	eventually(n.t, what, func() bool { return n.holds.Load() == want })
}

// TestClusterReaderHolds: a persistent session holds its node's reader of
// the log once it subscribes (a second filter takes no second hold), while
// its client is away, until it moves to another node, where it holds that
// node's once resumed with its filters; a clean start ends it and its
// hold; a session without subscriptions, or not persistent, holds
// nothing; one not persistent with a subscription taken over by a
// persistent CONNECT on its node holds it (fails when a session's end
// does not give its hold back: the node that it left keeps reading).
func TestClusterReaderHolds(t *testing.T) {
	fc := newFakeCluster(t)
	na := &holdNode{fakeNode: fc.node(t), t: t}
	nb := &holdNode{fakeNode: fc.node(t), t: t}
	a := startBroker(t, Options{AllowAnonymous: true, SessionStore: na})
	b := startBroker(t, Options{AllowAnonymous: true, SessionStore: nb})

	s := connectTo(t, a, "s", false, keepSession(0))
	q := connectTo(t, a, "q", false)
	q.subscribe(1, "q", 1)
	na.want(0, "no hold for a persistent session without subscriptions, nor for one not persistent")
	s.subscribe(1, "t", 1)
	s.subscribe(2, "u", 1)
	na.want(1, "one hold for a persistent session with two filters")
	s.send(&packet.Disconnect{})
	s.expectClosed()
	na.want(1, "the hold kept while the client is away")

	if !a.Supersede("s", 0, false) {
		t.Fatal("Supersede found no session")
	}
	na.want(0, "the hold given back once the session moved away")
	s = connectTo(t, b, "s", true, keepSession(0))
	nb.want(1, "a hold for the session resumed with its filters")
	s.close()
	s = connectTo(t, b, "s", false) // clean start: the session ends
	nb.want(0, "the hold given back at a clean start")
	s.close()

	u := connectTo(t, b, "u", false)
	u.subscribe(1, "v", 1)
	nb.want(0, "no hold for a session not persistent")
	u2 := connectTo(t, b, "u", true, keepSession(0))
	nb.want(1, "a hold for the session a persistent CONNECT took over on its node")
	u2.send(&packet.Disconnect{})
	u2.expectClosed()
	if n := nb.holds.Load(); n != 1 {
		t.Fatalf("%d holds after the client left, want 1", n)
	}
}
