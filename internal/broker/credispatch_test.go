package broker

import (
	"testing"
	"time"
)

// TestClusterRedispatchSettlesOnceStored: a shared copy another node sent
// here, left unacknowledged by a member whose clean session ended, goes to
// the group's persistent member, and is settled with the sending node only
// once it is written to the log for that member: true when the write is
// done, false when it fails, so that the sender gives it to a member
// elsewhere (it was settled true before the write was acknowledged).
func TestClusterRedispatchSettlesOnceStored(t *testing.T) {
	for _, fail := range []bool{false, true} {
		name := map[bool]string{false: "stored", true: "not stored"}[fail]
		t.Run(name, func(t *testing.T) {
			fc := newFakeCluster(t)
			a, _ := clusterNode(t, fc)
			leaveOffline(t, fc, a, "y", "$share/g/t", 1)
			x := connectTo(t, a, "x", false)
			x.subscribe(1, "$share/g/t", 1)

			settled := make(chan bool, 2)
			m := &Message{Topic: "t", Payload: []byte("shared"), QoS: 1, Forwarded: true}
			a.DeliverShared(m, 1, "g", "t", nil, func(ok bool) { settled <- ok })
			x.expectPublish("t", "shared") // not acknowledged
			fc.setHold("store", true)
			fc.setFail(fail)
			x.close()
			if !fail {
				eventually(t, "the write for y", func() bool { return fc.heldCount() == 1 })
				select {
				case ok := <-settled:
					t.Fatalf("settled %v before the write for y was done", ok)
				default:
				}
				fc.release()
			}
			select {
			case ok := <-settled:
				if ok == fail {
					t.Fatalf("settled %v, want %v", ok, !fail)
				}
			case <-time.After(waitTime):
				t.Fatal("never settled")
			}
		})
	}
}
