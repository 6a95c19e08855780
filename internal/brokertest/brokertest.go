// Package brokertest starts brokers for tests: a Culex broker served on a
// loopback port, for the packages that plug into its seams (auth, the Kafka
// bridge), and mosquitto, a broker we did not write. As net/http/httptest
// serves a handler, Serve serves a broker without the listener package's
// config or the server's wiring.
//
// The broker's own tests cannot import it (it imports the broker) and
// keep their own harness.
package brokertest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/listener"
)

// shutdownTimeout bounds the broker's shutdown at the end of a test.
const shutdownTimeout = 20 * time.Second

// Serve starts a broker with opts and serves it on a loopback port until
// the test ends; then it stops accepting, shuts the broker down and fails
// the test if that fails. It returns the address and the broker.
func Serve(t testing.TB, opts broker.Options) (string, *broker.Broker) {
	t.Helper()
	b, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go b.Handle(nc, listener.ConnInfo{Listener: "tcp://test", Scheme: "tcp", Remote: nc.RemoteAddr(), Local: nc.LocalAddr()})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("broker shutdown: %v", err)
		}
	})
	return ln.Addr().String(), b
}
