package registry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReleasedIDsLeaveNothing: clients that connect once, with a will,
// and leave (their session ends) leave nothing in the ids' and wills'
// buckets: no record and no delete marker, which every core would keep
// (on disk and in its per-subject index) for every client id ever seen.
func TestReleasedIDsLeaveNothing(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 2, Config{})
	zero := uint32(0)
	const n = 40
	for i := range n {
		c, ack := dial(t, nodes[i%2].addr, fmt.Sprintf("once-%d", i), dialOpts{clean: true,
			will: &paho.WillMessage{Topic: "wills/once", Payload: []byte("gone")}})
		if ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
		// Session expiry 0 at DISCONNECT: the session ends, the will is dropped.
		if err := c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &zero}}); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(nc.Conn(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{"KV_culex_ids", "KV_culex_wills"} {
		deadline := time.Now().Add(e2eWait)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s, err := js.Stream(ctx, stream)
			var st jetstream.StreamState
			if err == nil {
				var info *jetstream.StreamInfo
				if info, err = s.Info(ctx); err == nil {
					st = info.State
				}
			}
			cancel()
			if err == nil && st.Msgs == 0 && st.NumSubjects == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after %d clients came and left: %d messages on %d subjects (err %v), want none",
					stream, n, st.Msgs, st.NumSubjects, err)
			}
			time.Sleep(50 * time.Millisecond) // polling the releases, done in the background
		}
	}
}

// TestPurgeIsCompareAndSet: purge removes a key's record only at the
// revision given, as Delete with LastRevision does, and a later record
// stays.
func TestPurgeIsCompareAndSet(t *testing.T) {
	nc := startNATS(t, 3)
	r, err := New(Config{Conn: nc.Conn(t, 1), Node: "a", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := r.bucket(ctx, jetstream.KeyValueConfig{Bucket: "purgetest", Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	first, err := kv.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := kv.Update(ctx, "k", []byte("2"), first)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.purge(ctx, kv, "k", first); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("purge at an earlier revision: %v, want a revision mismatch", err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || e.Revision() != second {
		t.Fatalf("after a purge at an earlier revision: %v, %v; want revision %d kept", e, err, second)
	}
	if err := r.purge(ctx, kv, "k", second); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("after the purge: %v, want not found", err)
	}
	if _, err := kv.Create(ctx, "k", []byte("3")); err != nil {
		t.Fatalf("create after the purge: %v", err)
	}
}

// TestCleanClaimOfNewIDReadsNothing: a clean start claims an id that has
// no record (new, or released) with one compare-and-set, without reading
// the bucket's leader first: one JetStream request per CONNECT, not two.
func TestCleanClaimOfNewIDReadsNothing(t *testing.T) {
	nc := startNATS(t, 3)
	nodes := startBrokers(t, nc, 1, Config{}) // on server 0, as the counter below
	watch := nc.Conn(t, 0)
	reads := make(chan *nats.Msg, 100)
	subj := "$JS.API.STREAM.MSG.GET.KV_culex_ids"
	sub, err := watch.ChanSubscribe(subj, reads)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if _, ack := dial(t, nodes[0].addr, fmt.Sprintf("new-%d", i), dialOpts{clean: true}); ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %#x", ack.ReasonCode)
		}
	}
	// The marker: a read of our own, after every CONNACK, through the same
	// server as the node's reads.
	marker := "marker-" + t.Name()
	if err := watch.PublishMsg(&nats.Msg{Subject: subj, Reply: marker, Data: []byte(`{"last_by_subj":"$KV.culex_ids.x"}`)}); err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		select {
		case m := <-reads:
			if m.Reply == marker {
				if got != 0 {
					t.Fatalf("%d clean CONNECTs of new ids read the ids' bucket %d times, want 0", n, got)
				}
				return
			}
			got++
		case <-time.After(e2eWait):
			t.Fatal("the marker read never came")
		}
	}
}
