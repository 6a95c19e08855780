package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// fakeCluster is an in-memory SessionStore shared by the nodes of a test
// (fakeNode each): one log, one set of records. Tests make it fail
// (fail), hold its acknowledgements (hold*), or cut a node off as if it
// had been killed (fakeNode.kill: its writes fail).
type fakeCluster struct {
	mu      sync.Mutex
	cond    *sync.Cond
	log     []fakeEntry // log[i] has seq i+1
	recs    map[string]*SessionRecord
	fail    bool // every call fails (no quorum)
	held    []func()
	hold    map[string]bool // "store", "save": acknowledgements wait for release
	calls   chan func()     // acknowledgements, in order, on one goroutine
	done    chan struct{}
	saves   int
	deletes int
	// gate, when set, holds each Backlog (after it read the log) until
	// closed; backlogs counts the Backlogs begun. lost is what Backlog
	// says the log removed (its dropped).
	gate     chan struct{}
	backlogs int
	lost     uint64
	rev      uint64 // the last revision given to a record
	getErr   error  // set: Get fails with it (the log unreachable)
	// early: a Save takes effect when called and only its answer waits
	// (held or not), as JetStream applies a write before its
	// acknowledgement arrives; else it takes effect when answered.
	early bool
}

type fakeEntry struct {
	clientID string
	data     []byte
}

var errFakeQuorum = errors.New("fake store: no quorum")

func newFakeCluster(t testing.TB) *fakeCluster {
	c := &fakeCluster{recs: map[string]*SessionRecord{}, hold: map[string]bool{},
		calls: make(chan func(), 1<<16), done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		defer close(c.done)
		for fn := range c.calls {
			fn()
		}
	}()
	t.Cleanup(func() {
		c.release()
		close(c.calls)
		<-c.done
	})
	return c
}

// node is one node's SessionStore.
func (c *fakeCluster) node(t testing.TB) *fakeNode {
	n := &fakeNode{c: c, stopped: make(chan struct{})}
	t.Cleanup(func() {
		c.mu.Lock()
		n.stop = true
		started := n.started
		c.cond.Broadcast()
		c.mu.Unlock()
		if started {
			<-n.stopped
		}
	})
	return n
}

// ack acknowledges on the store's goroutine, or keeps it for release when
// kind is held.
func (c *fakeCluster) ack(kind string, fn func()) {
	c.mu.Lock()
	if c.hold[kind] {
		c.held = append(c.held, fn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.calls <- fn
}

func (c *fakeCluster) setHold(kind string, on bool) {
	c.mu.Lock()
	c.hold[kind] = on
	c.mu.Unlock()
}

// release lets the held acknowledgements go.
func (c *fakeCluster) release() {
	c.mu.Lock()
	h := c.held
	c.held = nil
	c.mu.Unlock()
	for _, fn := range h {
		c.calls <- fn
	}
}

func (c *fakeCluster) setFail(on bool) {
	c.mu.Lock()
	c.fail = on
	c.mu.Unlock()
}

func (c *fakeCluster) heldCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

func (c *fakeCluster) record(id string) *SessionRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recs[id]
}

type fakeNode struct {
	c       *fakeCluster
	dead    bool // killed: its writes fail, its reader stops
	started bool
	stop    bool
	head    uint64
	stopped chan struct{}
}

// kill cuts the node off from now on, as if it died: nothing it writes
// is kept.
func (n *fakeNode) kill() {
	n.c.mu.Lock()
	n.dead = true
	n.c.mu.Unlock()
}

func (n *fakeNode) Persistent(t string) bool {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	for _, r := range n.c.recs {
		for _, f := range r.Filters {
			if _, _, shared, _ := topic.ParseShared(f); !shared && topic.Match(f, t) {
				return true
			}
		}
	}
	return false
}

func (n *fakeNode) Store(m *Message, done func(uint64, error)) { n.StoreFor("", m, done) }

// writable locks c.mu for a write of n and says whether it may go on: a
// dead node's write fails at once on the caller's goroutine (as a closed
// store's does), any with the cluster failing on the store's goroutine;
// either way with c.mu unlocked.
func (n *fakeNode) writable(fail func()) bool {
	c := n.c
	c.mu.Lock()
	if n.dead {
		c.mu.Unlock()
		fail()
		return false
	}
	if c.fail {
		c.mu.Unlock()
		c.calls <- fail
		return false
	}
	return true
}

func (n *fakeNode) StoreFor(id string, m *Message, done func(uint64, error)) {
	c := n.c
	if !n.writable(func() { done(0, errFakeQuorum) }) {
		return
	}
	c.log = append(c.log, fakeEntry{id, EncodeMessage(m)})
	seq := uint64(len(c.log))
	c.cond.Broadcast()
	c.mu.Unlock()
	c.ack("store", func() { done(seq, nil) })
}

func (n *fakeNode) Deliver(fn func(uint64, string, *Message)) {
	c := n.c
	c.mu.Lock()
	n.head = uint64(len(c.log))
	n.started = true
	c.mu.Unlock()
	go func() {
		defer close(n.stopped)
		for {
			c.mu.Lock()
			for uint64(len(c.log)) <= n.head && !n.stop {
				c.cond.Wait()
			}
			if n.stop {
				c.mu.Unlock()
				return
			}
			e := c.log[n.head]
			c.mu.Unlock()
			m, err := DecodeMessage(e.data)
			if err != nil {
				panic(err)
			}
			c.mu.Lock()
			n.head++
			seq := n.head
			dead := n.dead
			c.mu.Unlock()
			if !dead {
				fn(seq, e.clientID, m)
			}
		}
	}()
}

func (n *fakeNode) Load(ctx context.Context, id string) (*SessionRecord, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return nil, errFakeQuorum
	}
	r := c.recs[id]
	if r == nil {
		return nil, nil
	}
	// The confirming write: the holder's later Saves fail.
	c.rev++
	r.Rev = c.rev
	cp := *r
	cp.Filters = slices.Clone(r.Filters)
	cp.Data = slices.Clone(r.Data)
	return &cp, nil
}

func (n *fakeNode) Save(rec *SessionRecord, done func(uint64, error)) {
	c := n.c
	if !n.writable(func() { done(0, errFakeQuorum) }) {
		return
	}
	early := c.early
	c.mu.Unlock()
	cp := *rec
	apply := func() (uint64, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch old := c.recs[rec.ClientID]; {
		case n.dead:
		case rec.Rev != 0 && (old == nil || old.Rev != rec.Rev):
			return 0, ErrSessionMoved
		default:
			c.rev++
			cp.Rev = c.rev
			c.recs[rec.ClientID] = &cp
			c.saves++
		}
		return cp.Rev, nil
	}
	if early {
		rev, err := apply()
		c.ack("save", func() { done(rev, err) })
		return
	}
	c.ack("save", func() { done(apply()) })
}

func (n *fakeNode) Delete(id string, rev uint64, done func(error)) {
	c := n.c
	if !n.writable(func() { done(errFakeQuorum) }) {
		return
	}
	defer c.mu.Unlock()
	c.deletes++
	if old := c.recs[id]; rev != 0 && old != nil && old.Rev != rev {
		c.calls <- func() { done(ErrSessionMoved) }
		return
	}
	delete(c.recs, id)
	c.calls <- func() { done(nil) }
}

func (n *fakeNode) Backlog(ctx context.Context, id string, filters []string, from, to uint64,
	fn func(uint64, string, *Message) error) (uint64, error) {
	c := n.c
	c.mu.Lock()
	if c.fail {
		c.mu.Unlock()
		return 0, errFakeQuorum
	}
	log := slices.Clone(c.log)
	gate, lost := c.gate, c.lost
	c.backlogs++
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	for seq := from + 1; seq <= to && seq <= uint64(len(log)); seq++ {
		e := log[seq-1]
		m, err := DecodeMessage(e.data)
		if err != nil {
			return 0, err
		}
		ok := e.clientID == id
		for _, f := range filters {
			_, _, shared, _ := topic.ParseShared(f)
			ok = ok || e.clientID == "" && !shared && topic.Match(f, m.Topic)
		}
		if ok {
			if err := fn(seq, e.clientID, m); err != nil {
				return 0, err
			}
		}
	}
	return lost, nil
}

func (n *fakeNode) Get(ctx context.Context, seq uint64) (*Message, error) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.getErr != nil {
		return nil, c.getErr
	}
	if seq == 0 || seq > uint64(len(c.log)) {
		return nil, fmt.Errorf("fake store: message %d: %w", seq, ErrMessageGone)
	}
	return DecodeMessage(c.log[seq-1].data)
}

// HasSession implements SessionIndex.
func (n *fakeNode) HasSession(id string) bool { return n.c.record(id) != nil }

func (n *fakeNode) Head() uint64 {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.head
}
