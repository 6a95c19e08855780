package fault_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// checker counts, per message id, what the publishers had acknowledged
// and what each subscriber received. A message id is "<publisher>/<seq>"
// in the payload; its QoS is the publisher's.
type checker struct {
	mu     sync.Mutex
	acked  map[string]byte // id -> QoS, acknowledged with success
	sent   map[byte]int    // per QoS: publishes attempted
	failed map[byte]int    // per QoS: refused, timed out or cut off
	subs   []*record
	faults []time.Time // when each fault of the scenario began
}

func newChecker() *checker {
	return &checker{acked: map[string]byte{}, sent: map[byte]int{}, failed: map[byte]int{}}
}

// record is what one subscriber saw.
type record struct {
	name string
	qos  []byte // the QoS levels whose messages it subscribes to

	mu  sync.Mutex
	got map[string]int // id -> copies received
	// reconnects: when each new connection became usable (subscribed:
	// CONNACK with the session present, or the SUBACK of a new one),
	// and whether the session was lost.
	lost    []time.Time // connection losses
	usable  []time.Time
	noSess  int // reconnections that found no session
	markers map[string]bool
}

func (c *checker) newRecord(name string, qos ...byte) *record {
	r := &record{name: name, qos: qos, got: map[string]int{}, markers: map[string]bool{}}
	c.mu.Lock()
	c.subs = append(c.subs, r)
	c.mu.Unlock()
	return r
}

func (c *checker) attempt(qos byte) {
	c.mu.Lock()
	c.sent[qos]++
	c.mu.Unlock()
}

func (c *checker) ack(id string, qos byte) {
	c.mu.Lock()
	c.acked[id] = qos
	c.mu.Unlock()
}

func (c *checker) fail(qos byte) {
	c.mu.Lock()
	c.failed[qos]++
	c.mu.Unlock()
}

// ackedAt is how many messages at qos were acknowledged.
func (c *checker) ackedAt(qos byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, q := range c.acked {
		if q == qos {
			n++
		}
	}
	return n
}

// fault marks the moment one of the scenario's faults begins.
func (c *checker) fault() {
	c.mu.Lock()
	c.faults = append(c.faults, time.Now())
	c.mu.Unlock()
}

const markerPrefix = "marker/"

// received records one delivered payload.
func (r *record) received(payload string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasPrefix(payload, markerPrefix) {
		r.markers[payload] = true
		return
	}
	r.got[payload]++
}

func (r *record) connLost() {
	r.mu.Lock()
	r.lost = append(r.lost, time.Now())
	r.mu.Unlock()
}

func (r *record) connUsable(sessionPresent, first bool) {
	r.mu.Lock()
	r.usable = append(r.usable, time.Now())
	if !sessionPresent && !first {
		r.noSess++
	}
	r.mu.Unlock()
}

func (r *record) wants(qos byte) bool { return slices.Contains(r.qos, qos) }

// missing is how many messages acknowledged at a QoS r subscribes to it
// has not received.
func (c *checker) missing(r *record) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id, q := range c.acked {
		if r.wants(q) && r.got[id] == 0 {
			n++
		}
	}
	return n
}

func (r *record) hasMarkers(ms []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range ms {
		if !r.markers[m] {
			return false
		}
	}
	return true
}

// row is one line of the results: one scenario at one QoS.
type row struct {
	Scenario  string
	QoS       byte
	Sent      int
	Acked     int
	Failed    int           // publishes not acknowledged (refused, timed out, cut off)
	Received  int           // distinct acknowledged ids received, summed over subscribers
	Lost      int           // acknowledged, never received, summed over subscribers
	Dups      int           // copies beyond the first, summed over subscribers
	Unacked   int           // received though never acknowledged (a failed publish that got through)
	NoSession int           // reconnections that found their session gone
	Recovery  time.Duration // fault -> every subscriber that lost its connection usable again
	Subs      int
	LostIDs   []string // a few, for the failure message
}

// rows is the checker's verdict, one row per QoS published.
func (c *checker) rows(scenario string) []row {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []row
	for _, q := range []byte{1, 2} {
		if c.sent[q] == 0 {
			continue
		}
		w := row{Scenario: scenario, QoS: q, Sent: c.sent[q], Failed: c.failed[q]}
		for _, qq := range c.acked {
			if qq == q {
				w.Acked++
			}
		}
		for _, r := range c.subs {
			if !r.wants(q) {
				continue
			}
			w.Subs++
			r.mu.Lock()
			for id, qq := range c.acked {
				if qq != q {
					continue
				}
				if r.got[id] > 0 {
					w.Received++
				} else {
					w.Lost++
					if len(w.LostIDs) < 5 {
						w.LostIDs = append(w.LostIDs, r.name+":"+id)
					}
				}
			}
			for id, n := range r.got {
				if !strings.HasPrefix(id, fmt.Sprintf("q%d/", q)) {
					continue
				}
				w.Dups += n - 1
				if _, ok := c.acked[id]; !ok {
					w.Unacked++
				}
			}
			w.NoSession += r.noSess
			if d := recovery(c.faults, r.lost, r.usable); d > w.Recovery {
				w.Recovery = d
			}
			r.mu.Unlock()
		}
		sort.Strings(w.LostIDs)
		out = append(out, w)
	}
	return out
}

// recovery is the longest time from a fault to the moment a connection
// lost after it became usable again (0: none was lost; -1: one never
// did).
func recovery(faults, lost, usable []time.Time) time.Duration {
	var worst time.Duration
	for _, l := range lost {
		f := slices.IndexFunc(faults, func(f time.Time) bool { return f.After(l) })
		if f == 0 {
			continue // lost before any fault
		}
		if f < 0 {
			f = len(faults)
		}
		i := slices.IndexFunc(usable, func(u time.Time) bool { return u.After(l) })
		if i < 0 {
			return -1
		}
		if d := usable[i].Sub(faults[f-1]); d > worst {
			worst = d
		}
	}
	return worst
}

// msgID is the payload of a publisher's seq-th message at qos.
func msgID(qos byte, pub string, seq int) string { return fmt.Sprintf("q%d/%s/%d", qos, pub, seq) }
