package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/server"
)

// brokerURLs are the listeners of a broker under test.
type brokerURLs struct{ tcp, ws string }

// forBrokers runs test against Mosquitto and against a Culex node started
// in the test, each as a subtest.
func forBrokers(t *testing.T, test func(t *testing.T, url brokerURLs)) {
	t.Run("broker=mosquitto", func(t *testing.T) {
		wsPort := brokertest.FreePort(t)
		port := startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\nprotocol websockets\n", wsPort), wsPort)
		test(t, brokerURLs{fmt.Sprintf("tcp://127.0.0.1:%d", port), fmt.Sprintf("ws://127.0.0.1:%d", wsPort)})
	})
	t.Run("broker=culex", func(t *testing.T) {
		cfg := config.Default()
		cfg.DataDir, cfg.SysInterval = "", 0
		cfg.Listeners = []config.Listener{{URL: "tcp://127.0.0.1:0"}, {URL: "ws://127.0.0.1:0/mqtt"}}
		srv, err := server.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
		test(t, brokerURLs{srv.URL("tcp"), srv.URL("ws")})
	})
}
