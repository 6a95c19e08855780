package bench

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// refuseFirst is a broker that refuses each client id's first CONNECT
// with CONNACK 3 (server unavailable) and accepts the next ones, as a
// cluster node does while it cannot load a session yet.
func refuseFirst(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	var mu sync.Mutex
	seen := map[string]bool{}
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				p, err := packet.ReadPacket(c, packet.V311, 1<<16)
				if err != nil {
					return
				}
				id := p.(*packet.Connect).ClientID
				mu.Lock()
				again := seen[id]
				seen[id] = true
				mu.Unlock()
				ack := &packet.Connack{}
				if !again {
					ack.ReasonCode = 3
				}
				b, _ := ack.Encode(nil, packet.V311)
				if _, err := c.Write(b); err != nil || !again {
					return
				}
				for { // until the client's DISCONNECT or close
					if p, err := packet.ReadPacket(c, packet.V311, 1<<16); err != nil || p.Type() == packet.DISCONNECT {
						return
					}
				}
			})
		}
	})
	return "tcp://" + l.Addr().String()
}

// TestRetryRefused: with --retry, clients refused at their first CONNECT
// connect at the second, and each refusal is counted; without it they
// stay refused.
func TestRetryRefused(t *testing.T) {
	for _, retry := range []time.Duration{0, 10 * time.Second} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			cfg := testConfig(t, "conn", refuseFirst(t))
			cfg.Clients, cfg.Duration, cfg.Retry = 3, time.Millisecond, retry
			s := runT(t, cfg)
			want := int64(0)
			if retry > 0 {
				want = 3
			}
			if s.Clients.Connected != want || s.Errors["connack: 0x03 server unavailable"] != 3 || s.ConnectLatency.Count != want {
				t.Errorf("connected %d (want %d), errors %v, CONNACK latencies %d", s.Clients.Connected, want, s.Errors, s.ConnectLatency.Count)
			}
		})
	}
}
