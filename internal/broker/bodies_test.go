package broker

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
)

// storeCount is what a store holds of the message flow.
type storeCount struct {
	bodies int            // Bodies records
	refs   map[string]int // Messages records that reference a body, by client id
	inline map[string]int // Messages records with the message inline, by client id
	copies int            // records of any bucket but Bodies whose value holds the payload looked for
}

// countStore counts st's Bodies and Messages records; copies counts the
// Messages records whose value contains payload.
func countStore(t *testing.T, st store.Store, payload string) storeCount {
	t.Helper()
	n := storeCount{refs: map[string]int{}, inline: map[string]int{}}
	err := st.Scan(store.Bodies, "", func(string, []byte) error { n.bodies++; return nil })
	if err == nil {
		err = st.Scan(store.Messages, "", func(key string, v []byte) error {
			id := key[:len(key)-9]
			switch v[0] {
			case recOutRef:
				n.refs[id]++
			case recOut:
				n.inline[id]++
			}
			if payload != "" && bytes.Contains(v, []byte(payload)) {
				n.copies++
			}
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// boltStore is a Bolt store in a temporary directory, closed at the end.
func boltStore(t *testing.T) *store.Bolt {
	t.Helper()
	bs, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	return bs
}

// offline connects each of ids (MQTT 3.1.1 and 5 alternating) as a
// persistent session subscribed to filter, then disconnects it.
func (tb *testBroker) offline(filter string, qos byte, ids ...string) {
	tb.t.Helper()
	for i, id := range ids {
		c := tb.connect(id, versions[i%len(versions)], persistent(3600))
		c.subscribe(1, filter, qos)
		c.send(&packet.Disconnect{})
		c.expectClosed()
	}
}

// Messages records as Culex wrote them before bodies were shared (commit
// 6c7bc2d), the message inline: a queued QoS 1 copy of "inline" on q/old,
// and a QoS 2 copy of it sent with packet id 7.
var (
	inlineQoS1, _     = hex.DecodeString("02000100000000000400000000000000000032100005712f6f6c64000100696e6c696e65")
	inlineQoS2Sent, _ = hex.DecodeString("02010200070000000400000000000000000034100005712f6f6c64000100696e6c696e65")
)

// sharedByTwo starts a broker on a Bolt store and queues one QoS 1 message,
// "shared" on q/1, for two offline persistent sessions, a and b.
func sharedByTwo(t *testing.T) (*store.Bolt, *testBroker) {
	t.Helper()
	st := boltStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	tb.offline("q/#", 1, "a", "b")
	p := tb.connect("pub", packet.V5)
	p.publish("q/1", "shared", 1, false, 1)
	p.expect(packet.PUBACK)
	return st, tb
}

// applyNow applies ops to st and waits until they are durable.
func applyNow(t *testing.T, st store.Store, ops ...store.Op) {
	t.Helper()
	done := make(chan error, 1)
	st.Apply(ops, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// ackAll receives n PUBLISHes and completes them in reverse order of
// arrival (QoS 1: PUBACK; QoS 2: PUBREC, PUBREL, PUBCOMP), then makes sure
// the broker has handled every acknowledgement.
func (c *client) ackAll(n int, want ...string) {
	c.t.Helper()
	var got []*packet.Publish
	for range n {
		p := c.expect(packet.PUBLISH).(*packet.Publish)
		got = append(got, p)
	}
	for i, p := range got {
		if i < len(want) && string(p.Payload) != want[i] {
			c.t.Fatalf("PUBLISH %d: %q, want %q", i, p.Payload, want[i])
		}
	}
	for i := len(got) - 1; i >= 0; i-- {
		p := got[i]
		if p.QoS == 1 {
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
			continue
		}
		c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
		c.expect(packet.PUBREL)
		c.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	}
	c.expectAlive()
}

// TestBodyStoredOnce: a QoS 1 and a QoS 2 message for three offline
// persistent sessions are stored as two bodies and six references, the
// payload in no Messages record; the sessions resume one by one (every
// order) and complete their copies, and each body is deleted exactly when
// its last reference goes.
func TestBodyStoredOnce(t *testing.T) {
	ids := []string{"a", "b", "c"}
	orders := [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}
	for _, order := range orders {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			st := boltStore(t)
			tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
			tb.offline("q/#", 2, ids...)
			p := tb.connect("pub", packet.V5)
			p.publish("q/1", "shared-one", 1, false, 1)
			p.expect(packet.PUBACK)
			p.publish("q/2", "shared-two", 2, false, 2)
			p.expect(packet.PUBREC)
			n := countStore(t, st, "shared-")
			if n.bodies != 2 || n.copies != 0 || len(n.inline) != 0 {
				t.Fatalf("after publishing: %d bodies, %d Messages records with the payload, inline %v; want 2, 0, none", n.bodies, n.copies, n.inline)
			}
			for _, id := range ids {
				if n.refs[id] != 2 {
					t.Fatalf("after publishing: references %v, want 2 for each session", n.refs)
				}
			}
			for k, i := range order {
				c := tb.dial(versions[i%len(versions)])
				if !c.connect(ids[i], persistent(3600)).SessionPresent {
					t.Fatalf("%s: no session", ids[i])
				}
				c.ackAll(2, "shared-one", "shared-two")
				n := countStore(t, st, "")
				want := 2
				if k == len(order)-1 {
					want = 0
				}
				if n.bodies != want || n.refs[ids[i]] != 0 {
					t.Fatalf("after %s (%d of %d) completed: %d bodies, references %v; want %d bodies, none of %s",
						ids[i], k+1, len(order), n.bodies, n.refs, want, ids[i])
				}
			}
		})
	}
}

// TestBodiesAtLoad: after a restart the reference counts are rebuilt from
// the records (a body goes with the last of its references, not the
// first), a body no record references is deleted, a record of the format
// before bodies were shared (message inline) still delivers, and a record
// whose body is missing is dropped.
func TestBodiesAtLoad(t *testing.T) {
	st, tb := sharedByTwo(t)
	tb.stop()

	// What an older Culex left: a's copy of a message inline, after the
	// shared one; an orphan body; a reference of b to a body that is gone.
	orphan := &Message{Topic: "q/orphan", Payload: []byte("orphan"), QoS: 1}
	applyNow(t, st,
		store.Op{Kind: store.Put, Bucket: store.Messages, Key: store.MessageKey("a", 1000), Value: inlineQoS1},
		store.Op{Kind: store.Put, Bucket: store.Bodies, Key: store.BodyKey(1 << 40), Value: encodeMessage(orphan)},
		store.Op{Kind: store.Put, Bucket: store.Messages, Key: store.MessageKey("b", 1000), Value: encodeOut(&outMsg{msg: orphan, qos: 1, body: &body{seq: 1<<40 + 1}})})
	if n := countStore(t, st, ""); n.bodies != 2 || n.refs["a"] != 1 || n.refs["b"] != 2 || n.inline["a"] != 1 {
		t.Fatalf("before the restart: %d bodies, references %v, inline %v", n.bodies, n.refs, n.inline)
	}

	tb = startBroker(t, Options{Store: st, AllowAnonymous: true})
	if n := countStore(t, st, ""); n.bodies != 1 || n.refs["b"] != 1 {
		t.Fatalf("after the restart: %d bodies, references %v; want the orphan body and b's dangling reference gone", n.bodies, n.refs)
	}
	a := tb.dial(packet.V5)
	if !a.connect("a", persistent(3600)).SessionPresent {
		t.Fatal("a: no session")
	}
	a.ackAll(2, "shared", "inline")
	if n := countStore(t, st, ""); n.bodies != 1 || n.refs["a"] != 0 || n.inline["a"] != 0 {
		t.Fatalf("after a completed: %d bodies, references %v, inline %v; want b's body kept, nothing of a", n.bodies, n.refs, n.inline)
	}
	b := tb.dial(packet.V5)
	if !b.connect("b", persistent(3600)).SessionPresent {
		t.Fatal("b: no session")
	}
	b.ackAll(1, "shared")
	if n := countStore(t, st, ""); n.bodies != 0 || len(n.refs) != 0 {
		t.Fatalf("after b completed: %d bodies, references %v; want none", n.bodies, n.refs)
	}
	tb.connect("pub", packet.V5).publishMarker("q/m", 1) // nothing but "shared" was queued for b
	b.expectMarker("q/m")
}

// TestInlineRecordUpgraded: an in-flight QoS 2 copy stored inline by an
// older Culex is re-sent after a restart; its PUBREC rewrites the record
// as a reference to a new body, and PUBCOMP deletes both.
func TestInlineRecordUpgraded(t *testing.T) {
	st := boltStore(t)
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true})
	tb.offline("q/#", 2, "a")
	tb.stop()
	applyNow(t, st, store.Op{Kind: store.Put, Bucket: store.Messages, Key: store.MessageKey("a", 1), Value: inlineQoS2Sent})

	tb = startBroker(t, Options{Store: st, AllowAnonymous: true})
	c := tb.dial(packet.V5)
	if !c.connect("a", persistent(3600)).SessionPresent {
		t.Fatal("no session")
	}
	pb := c.expectPublish("q/old", "inline")
	if !pb.Dup || pb.PacketID != 7 {
		t.Fatalf("re-sent PUBLISH dup=%v id=%d, want dup=true id=7", pb.Dup, pb.PacketID)
	}
	c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: 7})
	c.expect(packet.PUBREL) // sent once the released state is durable
	if n := countStore(t, st, ""); n.bodies != 1 || n.refs["a"] != 1 || n.inline["a"] != 0 {
		t.Fatalf("after PUBREC: %d bodies, references %v, inline %v; want the record rewritten as a reference", n.bodies, n.refs, n.inline)
	}
	c.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: 7})
	c.expectAlive()
	if n := countStore(t, st, ""); n.bodies != 0 || len(n.refs) != 0 {
		t.Fatalf("after PUBCOMP: %d bodies, references %v; want none", n.bodies, n.refs)
	}
}

// TestBodiesOfEndedSession: a session that ends (clean start over it)
// drops its references; the body goes once no other session has it.
func TestBodiesOfEndedSession(t *testing.T) {
	st, tb := sharedByTwo(t)
	for k, id := range []string{"a", "b"} {
		c := tb.connect(id, packet.V5) // clean start: the stored session ends
		c.expectAlive()
		n := countStore(t, st, "")
		if want := 1 - k; n.bodies != want || n.refs[id] != 0 {
			t.Fatalf("after %s started clean: %d bodies, references %v; want %d bodies", id, n.bodies, n.refs, want)
		}
	}
}

// bodyCheckStore wraps a store and checks, after each Apply in Apply order,
// that every Messages record referencing a body has it: a store that
// commits whole Applies in order (Bolt) then never holds a reference
// without its body, whatever moment a crash picks.
type bodyCheckStore struct {
	store.Store
	t *testing.T

	mu     sync.Mutex
	bodies map[string]bool   // Bodies keys
	refs   map[string]string // Messages key -> Bodies key it references
	maxRef int               // most references seen at once
}

func (s *bodyCheckStore) Apply(ops []store.Op, done func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		switch {
		case op.Bucket == store.Bodies && op.Kind == store.Put:
			s.bodies[op.Key] = true
		case op.Bucket == store.Bodies && op.Kind == store.Delete:
			delete(s.bodies, op.Key)
		case op.Bucket == store.Messages && op.Kind == store.Put && op.Value[0] == recOutRef:
			om, err := decodeOut(op.Value)
			if err != nil {
				s.t.Errorf("reference record: %v", err)
				continue
			}
			s.refs[op.Key] = store.BodyKey(om.body.seq)
		case op.Bucket == store.Messages && op.Kind == store.Put:
			delete(s.refs, op.Key)
		case op.Bucket == store.Messages && op.Kind == store.Delete:
			delete(s.refs, op.Key)
		case op.Bucket == store.Messages && op.Kind == store.DeletePrefix:
			for k := range s.refs {
				if strings.HasPrefix(k, op.Key) {
					delete(s.refs, k)
				}
			}
		}
	}
	for k, b := range s.refs {
		if !s.bodies[b] {
			s.t.Errorf("after an Apply of %d ops: record %q references body %x, which is not stored", len(ops), k, b)
		}
	}
	s.maxRef = max(s.maxRef, len(s.refs))
	s.Store.Apply(ops, done)
}

// TestBodiesConsistentAtEveryApply: four publishers publish QoS 1 and 2
// messages at once to persistent sessions, three connected (acknowledging
// as they receive) and two offline, one of which then ends: after every
// Apply, every reference has its body; at the end the only bodies left
// are those of the offline session's queue.
func TestBodiesConsistentAtEveryApply(t *testing.T) {
	const pubs, perPub = 4, 100
	cs := &bodyCheckStore{Store: memStore(t), t: t, bodies: map[string]bool{}, refs: map[string]string{}}
	tb := startBroker(t, Options{Store: cs, AllowAnonymous: true})
	tb.offline("w/#", 2, "off1", "off2")
	var acks sync.WaitGroup
	var ons []*client
	for i := range 3 {
		c := tb.connect("on"+strconv.Itoa(i), versions[i%2], persistent(3600))
		c.subscribe(1, "w/#", byte(1+i%2))
		acks.Add(1)
		go func() { // acknowledges until the connection closes; no t.Fatal here
			defer acks.Done()
			for {
				c.nc.SetReadDeadline(time.Time{})
				p, err := packet.ReadPacket(c.nc, c.v, 0)
				if err != nil {
					return
				}
				var ack packet.Packet
				switch p := p.(type) {
				case *packet.Publish:
					kind := packet.PUBACK
					if p.QoS == 2 {
						kind = packet.PUBREC
					}
					ack = &packet.Ack{Kind: kind, PacketID: p.PacketID}
				case *packet.Ack:
					if p.Kind == packet.PUBREL {
						ack = &packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID}
					}
				}
				if ack == nil {
					continue
				}
				if b, err := ack.Encode(nil, c.v); err != nil {
					return
				} else if _, err := c.nc.Write(b); err != nil {
					return
				}
			}
		}()
		ons = append(ons, c)
	}
	t.Cleanup(func() {
		for _, c := range ons {
			c.nc.Close()
		}
		acks.Wait()
	})
	var ps []*client
	for i := range pubs {
		p := tb.connect("p"+strconv.Itoa(i), packet.V5)
		for j := range perPub { // pipelined: the broker routes the publishers concurrently
			p.publish("w/"+strconv.Itoa(i), strconv.Itoa(j), byte(1+j%2), false, uint16(j+1))
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		for j := range perPub {
			want := packet.PUBACK
			if j%2 == 1 {
				want = packet.PUBREC
			}
			p.expect(want)
		}
	}
	tb.connect("off2", packet.V5).expectAlive() // clean start: off2 ends
	eventually(t, "the connected sessions to complete every copy", func() bool {
		n := countStore(t, cs, "")
		return n.bodies == pubs*perPub && len(n.refs) == 1 && n.refs["off1"] == pubs*perPub
	})
	cs.mu.Lock()
	t.Logf("at most %d references stored at once", cs.maxRef)
	cs.mu.Unlock()
}
