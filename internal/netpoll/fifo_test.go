package netpoll

import "testing"

// TestConnFIFOBounded: a queue that never empties (two connections always
// wait while a million pass through) keeps a small backing array, and an
// emptied one gives a burst's array back.
func TestConnFIFOBounded(t *testing.T) {
	var f connFIFO
	a, b := new(Conn), new(Conn)
	f.push(a)
	f.push(b)
	for range 1 << 20 {
		c := f.pop()
		f.push(c)
	}
	if f.len() != 2 {
		t.Fatalf("len %d, want 2", f.len())
	}
	if c := cap(f.q); c > 8 {
		t.Fatalf("2 live connections hold a backing array of %d", c)
	}
	if f.pop() != a || f.pop() != b {
		t.Fatal("order lost")
	}
	for range 10 * fifoKeep {
		f.push(a)
	}
	for f.len() > 0 {
		f.pop()
	}
	if c := cap(f.q); c > fifoKeep {
		t.Fatalf("an empty queue keeps a backing array of %d", c)
	}
}
