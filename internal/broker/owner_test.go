package broker

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestTakeoverLockPerClientID: the takeover step of CONNECT is exclusive
// per client id only. While the lock of id x is held, a CONNECT for y is
// accepted and one for x waits; it is accepted once x is unlocked, and no
// lock is left behind.
func TestTakeoverLockPerClientID(t *testing.T) {
	tb := startBroker(t, Options{AllowAnonymous: true})
	unlock := tb.ids.lock("x")
	tb.connect("y", packet.V5) // not held up by x
	x := tb.dial(packet.V5)
	x.send(&packet.Connect{Version: packet.V5, CleanStart: true, KeepAlive: 60, ClientID: "x"})
	eventually(t, "the CONNECT for x waiting for its id", func() bool {
		tb.ids.mu.Lock()
		defer tb.ids.mu.Unlock()
		return tb.ids.m["x"] != nil && tb.ids.m["x"].refs == 2
	})
	unlock()
	if ack := x.expect(packet.CONNACK).(*packet.Connack); ack.ReasonCode != 0 {
		t.Fatalf("x: CONNACK 0x%02x", ack.ReasonCode)
	}
	if n := tb.ids.len(); n != 0 {
		t.Fatalf("%d client id locks left", n)
	}
}

// TestKeyLocks: under the race detector, holders of one key never overlap,
// holders of different keys do (each waits inside its lock for the
// other), and the map is empty afterwards.
func TestKeyLocks(t *testing.T) {
	var k keyLocks
	var wg sync.WaitGroup
	var inside, most atomic.Int32
	counter := 0 // guarded by the lock of "same" only
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				unlock := k.lock("same")
				n := inside.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				counter++
				inside.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	if counter != 1600 || most.Load() != 1 {
		t.Fatalf("same key: counter %d, at most %d inside at once", counter, most.Load())
	}
	both := make(chan struct{})
	var in sync.WaitGroup
	in.Add(2)
	for _, key := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := k.lock(key)
			defer unlock()
			in.Done()
			<-both
		}()
	}
	done := make(chan struct{})
	go func() { in.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitTime):
		t.Fatal("locks of different keys did not overlap")
	}
	close(both)
	wg.Wait()
	if n := k.len(); n != 0 {
		t.Fatalf("%d locks left", n)
	}
}

// heapAfterGC is the live heap.
func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// bigPackets is how many large packets the memory tests send, and their
// payload (or property) size: 150 × 256 KiB = 37.5 MiB if each is pinned.
const (
	bigPackets = 150
	bigSize    = 256 << 10
	heapSlack  = 12 << 20
)

// TestTopicAliasesDoNotPinPackets: each topic alias keeps its topic, not
// the whole PUBLISH it came with.
func TestTopicAliasesDoNotPinPackets(t *testing.T) {
	cfg := testConfig()
	cfg.MaxTopicAlias = bigPackets
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	c := tb.connect("aliases", packet.V5)
	payload := []byte(strings.Repeat("p", bigSize))
	before := heapAfterGC()
	for i := 1; i <= bigPackets; i++ {
		p := &packet.Publish{Topic: fmt.Sprintf("alias/%d", i), Payload: payload}
		p.Props.TopicAlias = uint16(i)
		p.Props.Set(packet.PropTopicAlias)
		c.send(p)
	}
	c.send(&packet.Pingreq{})
	c.expect(packet.PINGRESP) // every PUBLISH before it was handled
	if grew := int64(heapAfterGC()) - int64(before); grew > heapSlack {
		t.Fatalf("heap grew %d MiB for %d aliases of %d KiB packets", grew>>20, bigPackets, bigSize>>10)
	}
	runtime.KeepAlive(c)
}

// TestSubscriptionsDoNotPinPackets: each subscription keeps its filter,
// not the whole SUBSCRIBE (here made large by a User Property).
func TestSubscriptionsDoNotPinPackets(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSubscriptionsPerClient = bigPackets
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	c := tb.connect("subs", packet.V5)
	pad := make([]packet.UserProperty, 4) // a value holds at most 64 KiB
	for i := range pad {
		pad[i] = packet.UserProperty{Key: "pad", Value: strings.Repeat("u", bigSize/4-16)}
	}
	before := heapAfterGC()
	for i := 1; i <= bigPackets; i++ {
		p := &packet.Subscribe{PacketID: uint16(i), Subscriptions: []packet.Subscription{{Filter: fmt.Sprintf("sub/%d/#", i)}}}
		p.Props.User = pad
		p.Props.Set(packet.PropUser)
		c.send(p)
		c.expect(packet.SUBACK)
	}
	if grew := int64(heapAfterGC()) - int64(before); grew > heapSlack {
		t.Fatalf("heap grew %d MiB for %d subscriptions of %d KiB packets", grew>>20, bigPackets, bigSize>>10)
	}
	runtime.KeepAlive(c)
}

// TestConnectionsDoNotPinConnects: what a connection keeps of its CONNECT
// (the will's properties, the authentication method kept for
// re-authentication) is copied out of the body, here made large by the
// CONNECT's own User Properties.
func TestConnectionsDoNotPinConnects(t *testing.T) {
	pad := make([]packet.UserProperty, 4) // a value holds at most 64 KiB
	for i := range pad {
		pad[i] = packet.UserProperty{Key: "pad", Value: strings.Repeat("u", bigSize/4-16)}
	}
	for _, tc := range []struct {
		name string
		opt  func(*packet.Connect)
	}{
		{"will", func(p *packet.Connect) {
			p.WillFlag, p.WillTopic, p.WillPayload = true, "will", []byte("gone")
			p.WillProps.ContentType = "text/plain"
			p.WillProps.User = []packet.UserProperty{{Key: "k", Value: "v"}}
			p.WillProps.Set(packet.PropUser)
		}},
		{"auth method", func(p *packet.Connect) {
			p.Props.AuthMethod, p.Props.AuthData = "TEST", []byte("response")
			p.Props.Set(packet.PropAuthData)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxConnectPacketSize = 2 * bigSize
			tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true, Authenticator: scramAuth{}})
			before := heapAfterGC()
			cs := make([]*client, bigPackets)
			for i := range cs {
				cs[i] = tb.connect(fmt.Sprintf("c%d", i), packet.V5, tc.opt, func(p *packet.Connect) {
					p.Props.User = pad
					p.Props.Set(packet.PropUser)
				})
			}
			if grew := int64(heapAfterGC()) - int64(before); grew > heapSlack {
				t.Fatalf("heap grew %d MiB for %d connections with %d KiB CONNECTs", grew>>20, bigPackets, bigSize>>10)
			}
			runtime.KeepAlive(cs)
		})
	}
}

// ownerAuth authenticates everyone as the owner their username names.
type ownerAuth struct{}

func (ownerAuth) Authenticate(_ context.Context, c *ClientInfo, p *packet.Connect) error {
	c.Owner = p.Username
	return nil
}

// TestOwnerSurvivesRestart: the owner is stored with the session, so after
// a restart another identity is still refused (0x87) and the owner resumes.
func TestOwnerSurvivesRestart(t *testing.T) {
	st := memStore(t)
	as := func(user string) func(*packet.Connect) {
		return func(p *packet.Connect) { p.UsernameFlag, p.Username = true, user }
	}
	tb := startBroker(t, Options{Store: st, AllowAnonymous: true, Authenticator: ownerAuth{}})
	b := tb.connect("dev-b", packet.V5, persistent(3600), as("b"))
	b.send(&packet.Disconnect{})
	b.expectClosed()
	tb.stop()

	tb = startBroker(t, Options{Store: st, AllowAnonymous: true, Authenticator: ownerAuth{}})
	if ack := tb.dial(packet.V5).connect("dev-b", persistent(3600), as("a")); ack.ReasonCode != packet.ErrNotAuthorized.Value {
		t.Fatalf("another identity after a restart: CONNACK 0x%02x, want 0x87", ack.ReasonCode)
	}
	if ack := tb.dial(packet.V5).connect("dev-b", persistent(3600), as("b")); ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatal("the owner after a restart: no session present")
	}
	if st := tb.Stats(); st.TakeoverRefused != 1 || st.PersistentSessions != 1 {
		t.Fatalf("TakeoverRefused %d PersistentSessions %d, want 1 and 1", st.TakeoverRefused, st.PersistentSessions)
	}
}

// TestTopicAliasBytesBounded: the topics of one connection's aliases hold
// at most MaxPacketSize bytes; replacing an alias frees its topic's bytes,
// and going over gets DISCONNECT 0x97.
func TestTopicAliasBytesBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxPacketSize = 1024
	tb := startBroker(t, Options{Config: cfg, AllowAnonymous: true})
	c := tb.connect("aliases", packet.V5)
	for i, a := range []struct {
		alias uint16
		len   int
	}{{1, 600}, {1, 600}, {2, 400}, {3, 100}} {
		p := &packet.Publish{Topic: strings.Repeat(fmt.Sprint(i), a.len)}
		p.Props.TopicAlias = a.alias
		p.Props.Set(packet.PropTopicAlias)
		c.send(p)
		if i < 3 {
			c.send(&packet.Pingreq{})
			c.expect(packet.PINGRESP)
		}
	}
	c.expectDisconnect(packet.ErrQuotaExceeded.Value)
}
