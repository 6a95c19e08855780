package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/brokertest"
	"github.com/culexmq/culex/internal/testcert"
)

// TestRunTLS runs over ssl:// and wss:// with the CA verified, and checks
// that an unverified certificate fails the handshake.
func TestRunTLS(t *testing.T) {
	dir := t.TempDir()
	// mosquitto running as root drops to its own user before loading keys.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca := testcert.NewCA(t, "culex bench test CA")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	cert, key := testcert.WriteFiles(t, dir, "server", ca.Server(t, "127.0.0.1"))
	sslPort, wssPort := brokertest.FreePort(t), brokertest.FreePort(t)
	startMosquitto(t, fmt.Sprintf("listener %d 127.0.0.1\ncertfile %s\nkeyfile %s\n"+
		"listener %d 127.0.0.1\nprotocol websockets\ncertfile %s\nkeyfile %s\n",
		sslPort, cert, key, wssPort, cert, key), sslPort, wssPort)
	for _, url := range []string{fmt.Sprintf("ssl://127.0.0.1:%d", sslPort), fmt.Sprintf("wss://127.0.0.1:%d", wssPort)} {
		tg, err := ParseTarget(url, TLSOptions{CAFile: caFile}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, "run", url)
		cfg.Target = tg
		cfg.Pubs, cfg.Subs, cfg.Limit, cfg.QoS, cfg.SubQoS = 2, 1, 200, 1, 1
		s := runT(t, cfg)
		if s.Received != 200 || s.Lost != 0 || len(s.Errors) != 0 {
			t.Errorf("%s: received %d lost %d errors %v", url, s.Received, s.Lost, s.Errors)
		}
	}
	cfg := testConfig(t, "conn", fmt.Sprintf("ssl://127.0.0.1:%d", sslPort))
	cfg.Clients, cfg.Duration = 1, time.Millisecond
	if s := runT(t, cfg); s.Clients.Failed != 1 || len(s.Errors) != 1 {
		t.Errorf("unverified certificate: clients %+v errors %v", s.Clients, s.Errors)
	}
}
