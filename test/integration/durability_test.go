package integration

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func dialQuick(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, time.Second)
}

// TestKillNineKeepsAcknowledgedMessages proves durability across SIGKILL of
// a real culex process: every QoS 1 message the broker PUBACKed to the
// publisher is delivered, after restart on the same data dir, to persistent
// subscribers that were offline (v3.1.1 clean=false and v5 with a long
// session expiry); duplicates are allowed and counted. A retained message
// published at QoS 1 survives too. The broker is killed mid-stream (half
// the messages acknowledged) and, separately, right after the last PUBACK.
func TestKillNineKeepsAcknowledgedMessages(t *testing.T) {
	t.Parallel()
	const n = 2000
	t.Run("qos=1/mid-stream", func(t *testing.T) { t.Parallel(); killNine(t, 1, n, n/2) })
	t.Run("qos=1/after-stream", func(t *testing.T) { t.Parallel(); killNine(t, 1, n, n) })
	// QoS 2 end to end: a message the broker completed (PUBCOMP) must reach
	// each QoS 2 subscriber exactly once after the crash.
	t.Run("qos=2/mid-stream", func(t *testing.T) { t.Parallel(); killNine(t, 2, n/2, n/4) })
}

// killNine publishes n messages at qos and SIGKILLs the broker once killAt
// of them are acknowledged (PUBACK, or PUBCOMP for QoS 2).
func killNine(t *testing.T, qos byte, n, killAt int) {
	dataDir := t.TempDir()
	proc := startCulex(t, dataDir)

	// Persistent subscribers subscribe at QoS 1, then go offline.
	v3 := connectV3(t, "tcp://"+proc.addr, "dur-v3", false)
	v3.subscribe("dur/stream", qos)
	v3.Disconnect(250)
	v5 := connectV5(t, proc.addr, v5Connect("dur-v5", false, 3600))
	v5.subscribe(sub("dur/stream", qos))
	v5.disconnect(0, nil)

	pub := connectV5(t, proc.addr, v5Connect("dur-pub", true, 0))
	pub.publish("dur/retained", 1, "retained before the crash", retained)
	pub.publish("dur/cleared", 1, "cleared before the crash", retained)
	pub.publish("dur/cleared", 1, "", retained)

	// Publish from several goroutines so many PUBLISHes are in flight when
	// the broker dies; record exactly which ones were PUBACKed.
	var (
		acked   sync.Map // payload -> true
		nAcked  atomic.Int64
		next    atomic.Int64
		workers sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				payload := strconv.FormatInt(i, 10)
				pr, err := pub.Publish(ctx, &paho.Publish{Topic: "dur/stream", QoS: qos, Payload: []byte(payload)})
				if err != nil {
					return // the broker is gone: this and later ones are unacknowledged
				}
				if pr.ReasonCode < 0x80 {
					acked.Store(payload, true)
					nAcked.Add(1)
				}
			}
		}()
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("%d messages to be acknowledged", killAt), func() bool { return nAcked.Load() >= int64(killAt) })
	proc.stop(syscall.SIGKILL)
	// Once paho has read to EOF every PUBACK the broker sent is accounted
	// for; what is still waiting can never be acknowledged.
	select {
	case <-pub.Done():
	case <-time.After(waitTimeout):
		t.Errorf("publisher did not notice the broker died")
	}
	cancel()
	workers.Wait()
	total := int(nAcked.Load())
	t.Logf("%d of %d messages acknowledged (qos %d) before SIGKILL", total, n, qos)

	proc = startCulex(t, dataDir)
	v3 = connectV3(t, "tcp://"+proc.addr, "dur-v3", false)
	if !v3.sessionPresent {
		t.Errorf("v3 persistent session lost across SIGKILL (session present = false)")
	}
	v5 = connectV5(t, proc.addr, v5Connect("dur-v5", false, 3600))
	if !v5.connack.SessionPresent {
		t.Errorf("v5 persistent session lost across SIGKILL (session present = false)")
	}
	// A marker at the stream's QoS queues behind what the resumed sessions hold.
	connectV5(t, proc.addr, v5Connect("dur-marker", true, 0)).publish("dur/stream", qos, markerPayload)
	for name, ch := range map[string]<-chan msg{"v3": v3.msgs, "v5": v5.msgs} {
		if dups := checkAllAcked(t, name, ch, &acked, total); qos == 2 && dups > 0 {
			t.Errorf("%s QoS 2 subscriber received %d duplicates across the crash, want exactly once", name, dups)
		}
	}

	late := connectV5(t, proc.addr, v5Connect("late", true, 0))
	late.subscribe(sub("dur/retained", 1), sub("dur/cleared", 1), sub("dur/marker", 1))
	late.publish("dur/marker", 1, markerPayload) // after its SUBSCRIBE's retained messages
	got := recvUntil(t, late.msgs, "dur/marker")
	if len(got) != 1 || string(got[0].Payload) != "retained before the crash" || !got[0].Retain {
		t.Errorf("retained messages after SIGKILL: %v, want dur/retained only (dur/cleared was cleared before the crash)", summarize(got))
	}
}

// checkAllAcked receives until the marker, checks every acknowledged
// payload arrived before it, and returns how many duplicates did.
func checkAllAcked(t *testing.T, name string, ch <-chan msg, acked *sync.Map, total int) int {
	t.Helper()
	got := map[string]int{}
	pos := map[string][]int{} // arrival positions, for duplicate reports
	n := 0
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case m := <-ch:
			p := string(m.Payload)
			if done = p == markerPayload; done {
				break
			}
			got[p]++
			pos[p] = append(pos[p], n)
			n++
		case <-deadline:
			t.Fatalf("%s subscriber: no marker within 30s after %d messages", name, n)
		}
	}
	var missing []string
	have := 0
	acked.Range(func(k, _ any) bool {
		if got[k.(string)] > 0 {
			have++
		} else if len(missing) < 10 {
			missing = append(missing, k.(string))
		}
		return true
	})
	if have < total {
		t.Errorf("%s subscriber: %d of %d acknowledged messages after restart; e.g. missing %v", name, have, total, missing)
		return 0
	}
	dups, extras := 0, 0
	var dupList []string
	for p, k := range got {
		dups += k - 1
		_, ok := acked.Load(p)
		if !ok {
			extras++
		}
		if k > 1 && len(dupList) < 10 {
			dupList = append(dupList, fmt.Sprintf("%s x%d at positions %v of %d (acknowledged to the publisher: %v)", p, k, pos[p], n, ok))
		}
	}
	if dups > 0 {
		slices.Sort(dupList)
		t.Logf("%s subscriber duplicates: %v", name, dupList)
	}
	t.Logf("%s subscriber: all %d acknowledged messages received; %d duplicates, %d unacknowledged extras", name, total, dups, extras)
	return dups
}

// TestGracefulRestartKeepsSessions proves SIGTERM shuts a real culex
// process down cleanly (exit 0, v5 clients told 0x8B) and a restart on the same data dir keeps persistent
// sessions, their queued messages and retained messages.
func TestGracefulRestartKeepsSessions(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	proc := startCulex(t, dataDir)
	c := connectV5(t, proc.addr, v5Connect("gr", false, 3600))
	c.subscribe(sub("gr/#", 1))
	c.disconnect(0, nil)
	pub := connectV5(t, proc.addr, v5Connect("gr-pub", true, 0))
	for i := range 10 {
		pub.publish("gr/q", 1, fmt.Sprint(i))
	}
	pub.publish("gr/ret", 1, "kept", retained)
	proc.stop(syscall.SIGTERM)
	select {
	case d := <-pub.disc:
		if d.ReasonCode != 0x8B {
			t.Errorf("v5 client got DISCONNECT 0x%02x on SIGTERM, want 0x8B", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Errorf("v5 client got no DISCONNECT on SIGTERM")
	}
	if proc.err != nil {
		t.Errorf("culex exited with %v after SIGTERM, want a clean exit", proc.err)
	}

	proc = startCulex(t, dataDir)
	c = connectV5(t, proc.addr, v5Connect("gr", false, 3600))
	if !c.connack.SessionPresent {
		t.Fatalf("session lost across graceful restart")
	}
	got := recvN(t, c.msgs, 11, waitTimeout)
	for i := range 10 {
		if string(got[i].Payload) != fmt.Sprint(i) {
			t.Errorf("queued message %d: %v", i, got[i])
		}
	}
	if got[10].Topic != "gr/ret" {
		t.Errorf("last message %v, want gr/ret", got[10])
	}
}
