package integration

import (
	"context"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// TestGracefulShutdownDisconnectsClients proves srv.Shutdown sends v5
// clients DISCONNECT 0x8B (Server shutting down) and closes v3.1.1 clients,
// and that the listeners stop accepting.
func TestGracefulShutdownDisconnectsClients(t *testing.T) {
	t.Parallel()
	srv := startBroker(t)
	addr := tcpAddr(t, srv)
	v5 := connectV5(t, addr, v5Connect("v5", true, 0))
	v3 := connectV3(t, srv.URL("tcp"), "v3", true)
	raw := dialRaw(t, addr, packet.V5)
	raw.mustConnect(rawConnect("raw", true))

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	select {
	case d := <-v5.disc:
		if d.ReasonCode != 0x8B {
			t.Errorf("paho v5 got DISCONNECT 0x%02x, want 0x8B", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Errorf("paho v5 got no DISCONNECT on shutdown")
	}
	raw.mustClose(waitTimeout, 0x8B)
	select {
	case <-v3.lost:
	case <-time.After(waitTimeout):
		t.Errorf("v3 client not disconnected on shutdown")
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if c, err := dialQuick(addr); err == nil {
		c.Close()
		t.Errorf("listener still accepting after Shutdown")
	}
}
