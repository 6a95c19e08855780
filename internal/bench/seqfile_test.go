package bench

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestSeqFileAcrossReconnect checks the pieces of the reconnect workload
// against a broker that queues for persistent sessions: a first `sub`
// run gets the first five messages of each stream and saves its state;
// five more, numbered on from 6 (--seq-start), are queued while it is
// away; a second run with the same client ids finds its sessions
// present, and with the saved state and --expect it ends once all ten
// of each stream are in, with nothing lost or duplicated. A third run
// that expects two more than were sent, and ends on the one message
// published for it (--limit), counts the other as lost.
func TestSeqFileAcrossReconnect(t *testing.T) {
	url := fmt.Sprintf("tcp://127.0.0.1:%d", startMosquitto(t, ""))
	file := filepath.Join(t.TempDir(), "seq.json")
	sub := func() Config {
		c := testConfig(t, "sub", url)
		c.Clients, c.QoS, c.SubQoS, c.Clean, c.SeqFile = 2, 1, 1, false, file
		c.ClientID, c.Topic, c.SubTopic = ParseTemplate("seq-%i"), ParseTemplate("seq/%i"), ParseTemplate("seq/%i")
		return c
	}
	pub := func(start uint64, limit int64) {
		t.Helper()
		c := testConfig(t, "pub", url)
		c.Clients, c.QoS, c.Limit, c.SeqStart, c.Topic = 2, 1, limit, start, ParseTemplate("seq/%i")
		if s := runT(t, c); s.Acked != limit {
			t.Fatalf("pub from %d: %d of %d acknowledged, errors %v", start, s.Acked, limit, s.Errors)
		}
	}

	first := sub()
	first.Limit = 10 // ends once it has the first five of each
	ready := make(chan struct{})
	first.onReady = func() { close(ready) }
	done := make(chan *Summary, 1)
	go func() { done <- runT(t, first) }()
	<-ready
	pub(1, 10)
	if s := <-done; s.Received != 10 || s.Lost != 0 || s.SessionPresent != 0 {
		t.Fatalf("first run: received %d lost %d session present %d", s.Received, s.Lost, s.SessionPresent)
	}

	pub(6, 10) // queued in the sessions
	second := sub()
	second.Expect = 20
	s := runT(t, second)
	if s.SessionPresent != 2 || s.Received != 10 || s.Expected != 20 || s.Lost != 0 || s.Duplicates != 0 || s.Reordered != 0 || s.ExpectS <= 0 {
		t.Errorf("second run: session present %d received %d expected %d lost %d dups %d reordered %d expect_s %v",
			s.SessionPresent, s.Received, s.Expected, s.Lost, s.Duplicates, s.Reordered, s.ExpectS)
	}

	third := sub()
	third.Expect, third.Limit = 22, 1
	ready = make(chan struct{})
	third.onReady = func() { close(ready) }
	go func() { done <- runT(t, third) }()
	<-ready
	c := testConfig(t, "pub", url)
	c.Clients, c.QoS, c.Limit, c.SeqStart, c.Topic = 1, 1, 1, 11, ParseTemplate("seq/%i")
	runT(t, c)
	if s := <-done; s.Expected != 22 || s.Lost != 1 || s.ExpectS != 0 {
		t.Errorf("third run: expected %d lost %d expect_s %v, want 22, 1, 0", s.Expected, s.Lost, s.ExpectS)
	}
}
