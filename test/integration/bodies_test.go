package integration

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/mqtt/packet"
	"github.com/culexmq/culex/internal/store"
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
	w := dialRaw(t, proc.addr, packet.V5)
	w.mustConnect(persistentConnect("sb-w", packet.V5))
	w.subscribe(1, packet.Properties{}, rawSub("sbw/marker", 1))
	w.send(&packet.Disconnect{})
	w.mustClose(waitTimeout)

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
