package listener

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
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

// BenchmarkServerSignature is the signature a server makes in every full
// TLS 1.3 handshake (CertificateVerify), for each key docs/tls.md
// compares: ECDSA P-256, and RSA 2048 with PSS as TLS 1.3 uses it.
func BenchmarkServerSignature(b *testing.B) {
	digest := sha256.Sum256([]byte("CertificateVerify"))
	b.Run("p256", func(b *testing.B) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, k, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rsa2048", func(b *testing.B) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			b.Fatal(err)
		}
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
		for b.Loop() {
			if _, err := rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest[:], opts); err != nil {
				b.Fatal(err)
			}
		}
	})
}
