package broker

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// A session can end while a CONNECT resumes it: its expiry timer fires, or
// the close of a session without expiry ends it, which takes no client id
// lock. The seams (Broker.seams) run the other side at the racing point.

// offlineSession connects id with a persistent session subscribed to t,
// disconnects it and returns the session once it is offline.
func offlineSession(t *testing.T, tb *testBroker, id string) *session {
	t.Helper()
	c := tb.connect(id, packet.V5, persistent(3600))
	c.subscribe(1, "t", 0)
	c.send(&packet.Disconnect{})
	c.expectClosed()
	s := tb.session(id)
	eventually(t, id+" offline", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conn == nil
	})
	return s
}

// session is the broker's session of id, or nil.
func (tb *testBroker) session(id string) *session {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.sessions[id]
}

// expectLive fails unless c's connection is attached to the broker's
// session of id and gets what is published on t.
func expectLive(t *testing.T, tb *testBroker, c *client, id string) {
	t.Helper()
	s := tb.session(id)
	if s == nil {
		t.Fatalf("no session %s", id)
	}
	s.mu.Lock()
	attached := s.conn != nil && !s.gone
	s.mu.Unlock()
	if !attached {
		t.Fatalf("session %s: no connection attached, or ended", id)
	}
	c.subscribe(2, "t", 0) // again, for a new session
	tb.connect("p", packet.V5).publish("t", "m", 0, false, 0)
	c.expectPublish("t", "m")
}

// TestResumeOfSessionEndedMeanwhile: the session ends after takeSession
// looked at it and before the CONNECT attaches: the client gets a new
// session (session present 0), not the ended one.
func TestResumeOfSessionEndedMeanwhile(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	var arm atomic.Bool
	tb.seams.Store(&seams{tookSession: func(s *session) {
		if arm.CompareAndSwap(true, false) {
			tb.endSession(s, nil)
		}
	}})
	offlineSession(t, tb, "x")
	arm.Store(true)
	c := tb.dial(packet.V5)
	if ack := c.connect("x", persistent(3600)); ack.ReasonCode != 0 || ack.SessionPresent {
		t.Fatalf("CONNACK 0x%02x session present %v, want 0x00 and false", ack.ReasonCode, ack.SessionPresent)
	}
	expectLive(t, tb, c, "x")
}

// TestExpiryTimerRacingResume: the session's expiry timer fired as a
// CONNECT took the session over, too late to be stopped: the session stays
// the client's.
func TestExpiryTimerRacingResume(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	var arm atomic.Bool
	expired := make(chan struct{})
	tb.seams.Store(&seams{tookSession: func(s *session) {
		if !arm.CompareAndSwap(true, false) {
			return
		}
		go func() { tb.expire(s); close(expired) }()
		// On the broker's goroutine: no t.Fatal here.
		for deadline := time.Now().Add(waitTime); ; time.Sleep(time.Millisecond) {
			select {
			case <-expired:
				return // ended it: the CONNECT must not resume it
			default:
			}
			tb.ids.mu.Lock()
			waits := tb.ids.m[s.id] != nil && tb.ids.m[s.id].refs == 2
			tb.ids.mu.Unlock()
			if waits {
				return
			}
			if time.Now().After(deadline) {
				t.Error("the expiry neither ended the session nor waited for its id")
				return
			}
		}
	}})
	s := offlineSession(t, tb, "x")
	s.mu.Lock()
	s.discAt -= 3600 // its time has come
	s.mu.Unlock()
	arm.Store(true)
	c := tb.dial(packet.V5)
	if ack := c.connect("x", persistent(3600)); ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("CONNACK 0x%02x session present %v, want 0x00 and true", ack.ReasonCode, ack.SessionPresent)
	}
	<-expired
	expectLive(t, tb, c, "x")
}

// TestCloseRacingResume: a CONNECT resumes a session without expiry after
// its connection closed and before the close ends it: the session stays
// the new client's.
func TestCloseRacingResume(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	var arm atomic.Bool
	resumed := make(chan *client, 1)
	tb.seams.Store(&seams{ending: func(s *session) {
		if !arm.CompareAndSwap(true, false) {
			return
		}
		// On the broker's goroutine: a failure here must still let the
		// test go on.
		var c *client
		defer func() { resumed <- c }()
		c = tb.dial(packet.V5)
		if ack := c.connect("x", persistent(3600)); ack.ReasonCode != 0 || !ack.SessionPresent {
			t.Errorf("CONNACK 0x%02x session present %v, want 0x00 and true", ack.ReasonCode, ack.SessionPresent)
		}
	}})
	old := tb.connect("x", packet.V5)
	old.subscribe(1, "t", 0)
	arm.Store(true)
	old.send(&packet.Disconnect{})
	c := <-resumed
	if c == nil || t.Failed() {
		t.FailNow()
	}
	expectLive(t, tb, c, "x")
}
