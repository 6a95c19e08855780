package cluster_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/clustertest"
	"github.com/eclipse/paho.golang/paho"
)

// metric reads one sample of the node's /metrics (name with its labels, as
// printed: `culex_x{reason="y"}`); -1 when absent.
func metric(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: waitTimeout}).Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return v
		}
	}
	return -1
}

// TestSharedCopies checks the tracking of QoS 1/2 shared copies sent to
// other nodes (docs/cluster.md, "Shared subscriptions across nodes") on a
// three-core cluster whose ACL lets members subscribe to shx/+ but not
// receive shx/secret.
func TestSharedCopies(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte("deny subscribe shx/secret\nallow both #\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := clustertest.Start(t, clustertest.Options{Cores: 3,
		Extra: adminExtra + "auth:\n  allow_anonymous: true\n  acl_file: " + strconv.Quote(acl) + "\n"})
	addr := func(i int) string { return c.Nodes[i].MQTT() }
	admin0 := adminURL(t, c.Nodes[0])

	// Each copy a member completed is freed on the publishing node: the
	// copies it holds return to none, however many messages went through.
	t.Run("CompletedCopiesFreed", func(t *testing.T) {
		const n = 300
		pub := dialV5(t, addr(0), "free-pub")
		a := sharedV5(t, addr(1), "free-a", "$share/free/fr/#", "end-free")
		b := sharedV5(t, addr(2), "free-b", "$share/free/fr/#", "end-free")
		members := []*member{{"a@n1", 1, a.msgs}, {"b@n2", 2, b.msgs}}
		waitMembers(t, pub, "fr/x", "end-free", members)
		for i := range n {
			if _, err := pub.pub("fr/x", byte(1+i%2), "m-"+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := pub.pub("end-free", 1, "end"); err != nil {
			t.Fatal(err)
		}
		seen, _ := countShared(t, members, "m-")
		checkOnce(t, seen, "m-", n)
		deadline := time.Now().Add(waitTimeout)
		for {
			v := metric(t, admin0, "culex_cluster_shared_copies_pending")
			if v == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("n0 still holds %v shared copies %v after its %d messages were all completed by their members: completed copies are never freed",
					v, waitTimeout, n)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	})

	// A copy every member's node returns (the members may not receive it)
	// is sent to the group's nodes in turn, eight times, then dropped: the
	// publisher's PUBACK is an error, not a success, and the drop is
	// counted with its reason.
	t.Run("ReturnedCopyNotAcknowledged", func(t *testing.T) {
		pub := dialV5(t, addr(0), "ret-pub")
		a := sharedV5(t, addr(1), "ret-a", "$share/ret/shx/+", "end-ret")
		b := sharedV5(t, addr(2), "ret-b", "$share/ret/shx/+", "end-ret")
		members := []*member{{"a@n1", 1, a.msgs}, {"b@n2", 2, b.msgs}}
		waitMembers(t, pub, "shx/ok", "end-ret", members)
		series := `culex_cluster_shared_copies_dropped_total{reason="max_tries"}`
		before := metric(t, admin0, series)
		resp, err := pub.pub("shx/secret", 1, "secret")
		if err == nil || resp == nil || resp.ReasonCode < 0x80 {
			t.Fatalf("publish of a copy no member may receive: PUBACK %+v (%v), want a failure reason code: it was delivered to nobody", resp, err)
		}
		if got := metric(t, admin0, series); got != before+1 {
			t.Errorf("%s went from %v to %v, want one more", series, before, got)
		}
		// The group still works, and the secret reached nobody: a later
		// message arrives alone.
		if _, err := pub.pub("shx/ok", 1, "after"); err != nil {
			t.Fatal(err)
		}
		if _, err := pub.pub("end-ret", 1, "end"); err != nil {
			t.Fatal(err)
		}
		seen, _ := countShared(t, members, "")
		if seen["secret"] != 0 || seen["after"] != 1 {
			t.Errorf("members got %v, want \"after\" once and no \"secret\"", seen)
		}
	})
}

// TestSharedCopyRedispatchedAtQoS0 ends the clean session of a member
// holding unacknowledged copies; its node hands them to the group's other
// member there, subscribed at QoS 0, which takes them: the publishing
// node, which holds each copy until a member completes it, must free them.
func TestSharedCopyRedispatchedAtQoS0(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Cores: 3, Extra: adminExtra})
	admin0 := adminURL(t, c.Nodes[0])
	pub := dialV5(t, c.Nodes[0].MQTT(), "rd-pub")
	held := dialV5Unacked(t, c.Nodes[1].MQTT(), "rd-held")
	held.sub("$share/rd/rd/x", 1, 0, false)
	b := dialV5(t, c.Nodes[1].MQTT(), "rd-qos0")
	b.sub("$share/rd/rd/x", 0, 0, false)

	// Publish until the member that never acknowledges holds a copy (the
	// other member takes every other one).
	var got []string
	deadline := time.Now().Add(waitTimeout)
	for i := 0; len(got) == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the unacknowledging member got no message")
		}
		if _, err := pub.pub("rd/x", 1, "p-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-held.msgs:
			got = append(got, m.Payload)
		case <-time.After(20 * time.Millisecond): // one poll
		}
	}
	for len(held.msgs) > 0 {
		got = append(got, (<-held.msgs).Payload)
	}
	if v := metric(t, admin0, "culex_cluster_shared_copies_pending"); v < float64(len(got)) {
		t.Fatalf("n0 holds %v shared copies; the member holds %d unacknowledged", v, len(got))
	}
	held.Disconnect(&paho.Disconnect{})
	// The QoS 0 member receives the held copies.
	want := map[string]bool{}
	for _, p := range got {
		want[p] = true
	}
	for len(want) > 0 {
		select {
		case m := <-b.msgs:
			delete(want, m.Payload)
		case <-time.After(waitTimeout):
			t.Fatalf("the QoS 0 member never got %v", want)
		}
	}
	deadline = time.Now().Add(waitTimeout)
	for {
		v := metric(t, admin0, "culex_cluster_shared_copies_pending")
		if v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n0 still holds %v shared copies %v after a QoS 0 member took them", v, waitTimeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// dialV5Unacked connects a v5 client that never acknowledges a message.
func dialV5Unacked(t *testing.T, addr, id string) *v5 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5{t: t, msgs: make(chan msg, 1000)}
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: conn, PacketTimeout: waitTimeout, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- msg{Topic: pr.Packet.Topic, Payload: string(pr.Packet.Payload)}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return c
}
