package broker

import (
	"context"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// SetDraining makes the broker refuse new connections (on) or accept them
// again (off). ref, if not empty, is the Server Reference (host:port) that
// DrainClients sends v5 clients with DISCONNECT 0x9C (use another server).
func (b *Broker) SetDraining(on bool, ref string) {
	if ref == "" {
		b.drainRef.Store(nil)
	} else {
		b.drainRef.Store(&ref)
	}
	b.draining.Store(on)
}

// Draining reports whether the broker refuses new connections.
func (b *Broker) Draining() bool { return b.draining.Load() }

// DrainClients disconnects the node's connections, rate per second (0:
// all at once), oldest first as the broker lists them: a v5 client gets
// DISCONNECT 0x9C (use another server) with the Server Reference given
// to SetDraining, or 0x8B (server shutting down) without one; a 3.1.1
// client's connection is closed. It returns once every connection is
// gone, or ctx's error when it ends first; moved counts the connections
// it disconnected.
func (b *Broker) DrainClients(ctx context.Context, rate int) (moved int, err error) {
	code := errShutdown
	if b.drainRef.Load() != nil {
		code = packet.ErrUseAnotherServer
	}
	kicked := make(map[*conn]bool)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		b.mu.Lock()
		var next []*conn
		for c := range b.conns {
			if !kicked[c] {
				next = append(next, c)
			}
		}
		left := len(b.conns)
		b.mu.Unlock()
		if left == 0 {
			return moved, nil
		}
		if len(next) == 0 {
			// Every connection was told; wait for them to close.
			next = nil
			timer.Reset(5 * time.Millisecond)
		}
		for _, c := range next {
			if rate > 0 {
				if d := time.Until(start.Add(time.Duration(moved) * time.Second / time.Duration(rate))); d > 0 {
					timer.Reset(d)
					select {
					case <-ctx.Done():
						return moved, ctx.Err()
					case <-timer.C:
					}
				}
			}
			kicked[c] = true
			c.kick(code)
			moved++
		}
		if len(next) == 0 {
			select {
			case <-ctx.Done():
				return moved, ctx.Err()
			case <-timer.C:
			}
		}
	}
}
