package listener

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// BenchmarkTLSHandshake is one full TLS 1.3 handshake (P-256 certificate)
// through the listener, client and server in this process.
func BenchmarkTLSHandshake(b *testing.B) {
	p := newPKI(b)
	done := make(chan struct{}, 1024)
	l, err := New(config.Listener{URL: "ssl://127.0.0.1:0", TLS: p.tlsConfig("", false)}, func(c net.Conn, info ConnInfo) {
		c.Close()
		done <- struct{}{}
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	go l.Serve()
	defer l.Close()
	conf := p.clientConfig()
	b.ResetTimer()
	for range b.N {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), conf)
		if err != nil {
			b.Fatal(err)
		}
		<-done
		c.Close()
	}
}
