package fault_test

import (
	"testing"
	"time"
)

// TestCheckerCounts checks the checker's arithmetic on a made-up run: a
// lost QoS 1 message, a QoS 1 duplicate, a QoS 2 duplicate, a failed
// publish that got through, and a reconnection that found no session.
func TestCheckerCounts(t *testing.T) {
	c := newChecker()
	a := c.newRecord("a", 1, 2)
	b := c.newRecord("b", 1)
	for i := 1; i <= 3; i++ {
		for _, q := range []byte{1, 2} {
			c.attempt(q)
			c.ack(msgID(q, "p", i), q)
		}
	}
	c.attempt(1)
	c.fail(1)
	c.fault()
	a.connLost()
	a.connUsable(false, false)
	for _, id := range []string{"q1/p/1", "q1/p/1", "q1/p/2", "q1/p/3", "q1/p/4", "q2/p/1", "q2/p/2", "q2/p/2", "q2/p/3", markerPrefix + "x"} {
		a.received(id)
	}
	b.received("q1/p/1")
	b.received("q1/p/3")
	b.received("q2/p/1") // not subscribed at QoS 2: counted nowhere
	rows := c.rows("s")
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	q1, q2 := rows[0], rows[1]
	if q1.Sent != 4 || q1.Acked != 3 || q1.Failed != 1 || q1.Subs != 2 || q1.Received != 5 || q1.Lost != 1 ||
		q1.Dups != 1 || q1.Unacked != 1 || q1.NoSession != 1 || q1.LostIDs[0] != "b:q1/p/2" {
		t.Errorf("QoS 1 row %+v", q1)
	}
	if q2.Acked != 3 || q2.Subs != 1 || q2.Received != 3 || q2.Lost != 0 || q2.Dups != 1 {
		t.Errorf("QoS 2 row %+v", q2)
	}
	if q1.Recovery <= 0 || q1.Recovery > time.Second {
		t.Errorf("recovery %v", q1.Recovery)
	}
	if c.missing(a) != 0 || c.missing(b) != 1 {
		t.Errorf("missing a=%d b=%d", c.missing(a), c.missing(b))
	}
}

// TestRecoveryPerFault: each lost connection is measured from the fault
// before it, not from the first fault; one never usable again is -1.
func TestRecoveryPerFault(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	faults := []time.Time{at(0), at(10000)}
	if d := recovery(faults, []time.Time{at(-50), at(100), at(10100)}, []time.Time{at(-40), at(200), at(10300)}); d != 300*time.Millisecond {
		t.Errorf("recovery %v, want 300ms", d)
	}
	if d := recovery(faults, []time.Time{at(100)}, nil); d != -1 {
		t.Errorf("recovery %v, want -1", d)
	}
	if d := recovery(faults, nil, nil); d != 0 {
		t.Errorf("recovery %v, want 0", d)
	}
}
