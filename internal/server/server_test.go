package server

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}, {URL: "ws://127.0.0.1:0/mqtt"}}
	return cfg
}

func TestStartServeShutdown(t *testing.T) {
	srv, err := New(testConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.URL("ws"), "ws://127.0.0.1:") || strings.HasSuffix(srv.URL("tcp"), ":0") {
		t.Fatalf("urls %q %q", srv.URL("tcp"), srv.URL("ws"))
	}
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(srv.URL("tcp"), "tcp://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := (&packet.Connect{ProtocolName: "MQTT", Version: packet.V5, CleanStart: true, ClientID: "s1"}).Encode(nil, packet.V5)
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	if p, err := packet.ReadPacket(conn, packet.V5, 0); err != nil || p.Type() != packet.CONNACK {
		t.Fatalf("connack: %v %v", p, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// A v5 client is told why [MQTT-3.14.2-1].
	p, err := packet.ReadPacket(conn, packet.V5, 0)
	if d, ok := p.(*packet.Disconnect); !ok || d.ReasonCode != packet.ErrServerShuttingDown.Value {
		t.Fatalf("after shutdown got %v %v, want DISCONNECT 0x8B", p, err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func TestDataDirInUse(t *testing.T) {
	cfg := testConfig(t)
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	_, err = New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "data_dir") || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second server on the same data dir: %v", err)
	}
}

func TestBadListenerNamesIt(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	cfg.Listeners = append(cfg.Listeners, config.Listener{URL: "tcp://" + busy.Addr().String()})
	_, err = New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "listeners[2]") {
		t.Fatalf("got %v, want an error naming listeners[2]", err)
	}
}
