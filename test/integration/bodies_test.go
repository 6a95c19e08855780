package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
	"github.com/eclipse/paho.golang/paho"
)

// bodyTag starts the payload of every message of TestSharedBodiesAcrossKill.
const bodyTag = "sbody-"

// TestSharedBodiesAcrossKill runs a real `culex serve` and SIGKILLs it
// between the steps, reading its bbolt file while it is down:
//
//  1. 20 QoS 1 messages of 1 KiB for three offline persistent sessions
//     (MQTT 5 QoS 1, 3.1.1 QoS 2, MQTT 5 QoS 1) are PUBACKed: the file
//     holds 20 bodies and 20 small records per session, no record holds a
//     payload. The test adds a body no record references.
//  2. Restarted: the orphan is deleted; the first two sessions resume, get
//     the 20 messages in order and complete them in reverse order: the 20
//     bodies stay, the third session's references to them too.
//  3. Restarted: the third session gets the 20 messages; once it has
//     completed them no body and no record of the three is left.
//
// Each kill follows a QoS 1 marker to a fourth, offline persistent
// session: its PUBACK means the marker is durable, and so is every write
// applied before it (the acknowledgements' deletes).
func TestSharedBodiesAcrossKill(t *testing.T) {
	t.Parallel()
	const k = 20
	dir := t.TempDir()
	proc := startCulex(t, dir)
	subs := []struct {
		id  string
		v   packet.Version
		qos byte
	}{{"sb-a", packet.V5, 1}, {"sb-b", packet.V311, 2}, {"sb-c", packet.V5, 1}}
	for _, s := range subs {
		c := dialRaw(t, proc.addr, s.v)
		c.mustConnect(persistentConnect(s.id, s.v))
		c.subscribe(1, packet.Properties{}, rawSub("sb/#", s.qos))
		c.send(&packet.Disconnect{})
		c.mustClose(waitTimeout)
	}
	witness(t, proc.addr)

	pub := dialRaw(t, proc.addr, packet.V5)
	pub.mustConnect(rawConnect("sb-pub", true))
	var want []string
	for i := range k {
		payload := fmt.Sprintf("%s%02d-%s", bodyTag, i, strings.Repeat("x", 1024))
		want = append(want, payload)
		pub.send(&packet.Publish{Topic: "sb/" + fmt.Sprint(i), QoS: 1, PacketID: uint16(i + 1), Payload: []byte(payload)})
	}
	for range k {
		if a := expect[*packet.Ack](pub); a.Kind != packet.PUBACK || a.ReasonCode >= 0x80 {
			t.Fatalf("got %v reason 0x%02x, want PUBACK", a.Kind, a.ReasonCode)
		}
	}
	proc.stop(syscall.SIGKILL)

	n := countBodies(t, dir, true)
	if n.bodies != k || n.inline != 0 || n.records["sb-a"] != k || n.records["sb-b"] != k || n.records["sb-c"] != k {
		t.Fatalf("after 20 messages for 3 sessions: %d bodies with the payload, %d records with it, records by session %v; want 20, 0, 20 each",
			n.bodies, n.inline, n.records)
	}

	proc = startCulex(t, dir)
	for _, s := range subs[:2] {
		resumeAndComplete(t, proc.addr, s.id, s.v, want)
	}
	markThenKill(t, proc)
	n = countBodies(t, dir, false)
	if n.bodies != k || n.records["sb-a"] != 0 || n.records["sb-b"] != 0 || n.records["sb-c"] != k {
		t.Fatalf("after sb-a and sb-b completed: %d bodies with the payload (the orphan is the 21st), records by session %v; want 20, and 20 for sb-c only",
			n.bodies, n.records)
	}

	proc = startCulex(t, dir)
	resumeAndComplete(t, proc.addr, "sb-c", packet.V5, want)
	markThenKill(t, proc)
	n = countBodies(t, dir, false)
	if n.bodies != 0 || n.records["sb-c"] != 0 || n.records["sb-w"] != 2 {
		t.Fatalf("after every session completed: %d bodies with the payload, records by session %v; want none but sb-w's 2 markers", n.bodies, n.records)
	}
}

// persistentConnect is a CONNECT that resumes or creates a persistent
// session: clean session off, and in MQTT 5 an hour's expiry.
func persistentConnect(id string, v packet.Version) *packet.Connect {
	cp := rawConnect(id, false)
	if v == packet.V5 {
		cp.Props = sessionExpiry(3600)
	}
	return cp
}

// resumeAndComplete resumes id's session, expects the PUBLISHes of want in
// order and completes them in reverse order, then waits until the broker
// has handled every acknowledgement.
func resumeAndComplete(t *testing.T, addr, id string, v packet.Version, want []string) {
	t.Helper()
	c := dialRaw(t, addr, v)
	if !c.mustConnect(persistentConnect(id, v)).SessionPresent {
		t.Fatalf("%s: session lost", id)
	}
	got := c.publishes(len(want))
	for i, p := range got {
		if string(p.Payload) != want[i] {
			t.Fatalf("%s: message %d is %.10q, want %.10q", id, i, p.Payload, want[i])
		}
	}
	for i := len(got) - 1; i >= 0; i-- {
		if p := got[i]; p.QoS == 1 {
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		} else {
			c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
			if a := expect[*packet.Ack](c); a.Kind != packet.PUBREL || a.PacketID != p.PacketID {
				t.Fatalf("%s: got %v %d, want PUBREL %d", id, a.Kind, a.PacketID, p.PacketID)
			}
			c.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
		}
	}
	c.send(&packet.Pingreq{}) // answered after every acknowledgement before it
	expect[*packet.Pingresp](c)
	c.Close()
}

// witness makes the offline persistent session sb-w, subscribed to the
// topic of markThenKill's markers, so that their PUBACK waits for the store.
func witness(t *testing.T, addr string) {
	t.Helper()
	w := dialRaw(t, addr, packet.V5)
	w.mustConnect(persistentConnect("sb-w", packet.V5))
	w.subscribe(1, packet.Properties{}, rawSub("sbw/marker", 1))
	w.send(&packet.Disconnect{})
	w.mustClose(waitTimeout)
}

// markThenKill publishes a QoS 1 marker for the offline session sb-w and,
// once it is PUBACKed (durable, with every write before it), SIGKILLs proc.
func markThenKill(t *testing.T, proc *culexProc) {
	t.Helper()
	c := dialRaw(t, proc.addr, packet.V5)
	c.mustConnect(rawConnect("sb-marker", true))
	c.publishMarker("sbw/marker", 1)
	proc.stop(syscall.SIGKILL)
}

// bodyCount is what a data dir's store holds of the test's messages.
type bodyCount struct {
	bodies  int            // Bodies records holding a payload of the test
	inline  int            // Messages records holding one
	records map[string]int // Messages records by client id
}

// countBodies opens the store of a stopped broker and counts; with orphan,
// it then adds a copy of the first body under a key no record references.
func countBodies(t *testing.T, dir string, orphan bool) bodyCount {
	t.Helper()
	st, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := bodyCount{records: map[string]int{}}
	var first []byte
	err = st.Scan(store.Bodies, "", func(_ string, v []byte) error {
		if bytes.Contains(v, []byte(bodyTag)) {
			n.bodies++
			if first == nil {
				first = bytes.Clone(v)
			}
		}
		return nil
	})
	if err == nil {
		err = st.Scan(store.Messages, "", func(key string, v []byte) error {
			id, _, _ := strings.Cut(key, "\x00")
			n.records[id]++
			if bytes.Contains(v, []byte(bodyTag)) {
				n.inline++
			}
			return nil
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	if orphan && first != nil {
		done := make(chan error, 1)
		st.Apply([]store.Op{{Kind: store.Put, Bucket: store.Bodies, Key: store.BodyKey(1 << 40), Value: first}}, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestBodiesIntactAfterKillMidStream SIGKILLs a real `culex serve` while
// four publishers send QoS 1 and 2 messages to two offline persistent
// sessions and one connected persistent session that acknowledges them:
// in the file, every record that references a body has it. After a
// restart, the offline sessions get every acknowledged message, and once
// the three sessions have ended (a clean start over each) no body is left.
func TestBodiesIntactAfterKillMidStream(t *testing.T) {
	t.Parallel()
	const pubs, perPub, killAt = 4, 400, 600
	dir := t.TempDir()
	proc := startCulex(t, dir)
	witness(t, proc.addr)
	for i, id := range []string{"mk-a", "mk-b"} {
		c := dialRaw(t, proc.addr, packet.V5)
		c.mustConnect(persistentConnect(id, packet.V5))
		c.subscribe(1, packet.Properties{}, rawSub("mk/#", byte(1+i)))
		c.send(&packet.Disconnect{})
		c.mustClose(waitTimeout)
	}
	on := connectV5(t, proc.addr, v5Connect("mk-on", false, 3600))
	on.subscribe(sub("mk/#", 2))

	var (
		acked   sync.Map
		nAcked  atomic.Int64
		workers sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for w := range pubs {
		pub := connectV5(t, proc.addr, v5Connect("mk-pub-"+strconv.Itoa(w), true, 0))
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range perPub {
				payload := fmt.Sprintf("%s%d-%d", bodyTag, w, i)
				pr, err := pub.Publish(ctx, &paho.Publish{Topic: "mk/" + strconv.Itoa(w), QoS: byte(1 + i%2), Payload: []byte(payload)})
				if err != nil {
					return // the broker is gone
				}
				if pr.ReasonCode < 0x80 {
					acked.Store(payload, true)
					nAcked.Add(1)
				}
			}
		}()
	}
	waitFor(t, 30*time.Second, "messages to be acknowledged", func() bool { return nAcked.Load() >= killAt })
	proc.stop(syscall.SIGKILL)
	cancel()
	workers.Wait()
	total := int(nAcked.Load())

	refs, bodies, dangling := checkReferences(t, dir)
	t.Logf("%d messages acknowledged before SIGKILL; the file holds %d references to %d bodies", total, refs, bodies)
	if len(dangling) > 0 {
		t.Fatalf("%d records reference a body the file does not hold, e.g. %q", len(dangling), dangling[0])
	}
	if bodies < total {
		t.Errorf("%d bodies for %d acknowledged messages", bodies, total)
	}

	proc = startCulex(t, dir)
	a := connectV5(t, proc.addr, v5Connect("mk-a", false, 3600))
	b := connectV5(t, proc.addr, v5Connect("mk-b", false, 3600))
	// At QoS 2: mk-b's QoS 2 copies are sent once their records are
	// durable, and a QoS 1 marker could overtake them.
	connectV5(t, proc.addr, v5Connect("mk-marker", true, 0)).publish("mk/marker", 2, markerPayload)
	checkAllAcked(t, "mk-a", a.msgs, &acked, total)
	checkAllAcked(t, "mk-b", b.msgs, &acked, total)
	a.disconnect(0, nil)
	b.disconnect(0, nil)
	for _, id := range []string{"mk-a", "mk-b", "mk-on"} { // the sessions end, with what they held
		connectV5(t, proc.addr, v5Connect(id, true, 0)).disconnect(0, nil)
	}
	markThenKill(t, proc)
	if n := countBodies(t, dir, false); n.bodies != 0 {
		t.Errorf("after every session completed: %d bodies left, records by session %v", n.bodies, n.records)
	}
}

// checkReferences reads the store of a stopped broker: the records that
// reference a body, the bodies, and the keys of records whose body is
// missing.
func checkReferences(t *testing.T, dir string) (refs, bodies int, dangling []string) {
	t.Helper()
	st, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	have := map[string]bool{}
	err = st.Scan(store.Bodies, "", func(key string, _ []byte) error {
		have[key] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Scan(store.Messages, "", func(key string, v []byte) error {
		seq, ok := referencedBody(v)
		if !ok {
			return nil
		}
		refs++
		if !have[store.BodyKey(seq)] {
			dangling = append(dangling, key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return refs, len(have), dangling
}

// referencedBody parses a Messages record that references a body (kind 6:
// state, flags, packet id, subscription identifiers, group, filter, body
// sequence) and returns the sequence.
func referencedBody(v []byte) (uint64, bool) {
	if len(v) < 5 || v[0] != 6 {
		return 0, false
	}
	v = v[5:] // kind, state, flags, packet id
	n, k := binary.Uvarint(v)
	v = v[k:]
	for range n {
		_, k = binary.Uvarint(v)
		v = v[k:]
	}
	for range 2 { // group, filter
		l, k := binary.Uvarint(v)
		v = v[k+int(l):]
	}
	seq, k := binary.Uvarint(v)
	return seq, k > 0
}
