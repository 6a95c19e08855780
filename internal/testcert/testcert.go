// Package testcert issues throwaway certificate authorities and
// certificates for tests: a CA, server certificates for the loopback
// addresses, client certificates, and their PEM files.
//
// It imports nothing of ours, so the tests of any package may use it,
// including the listener's own. Certificates are valid from an hour ago
// to an hour from now and use P-256 keys.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte // Cert, PEM-encoded
}

// NewCA makes a self-signed certificate authority named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	pair := create(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil, nil)
	return &CA{Cert: pair.Leaf, Key: pair.PrivateKey.(*ecdsa.PrivateKey), PEM: encode("CERTIFICATE", pair.Certificate[0])}
}

// Pool is a certificate pool that holds only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteFile writes the CA certificate as PEM to dir/name and returns the path.
func (ca *CA) WriteFile(t testing.TB, dir, name string) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, name), ca.PEM)
}

// Server issues a server certificate named cn for 127.0.0.1, ::1 and
// localhost.
func (ca *CA) Server(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return create(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.Cert, ca.Key)
}

// Node issues a cluster node's certificate named cn for 127.0.0.1: both
// ends of a route or link use it (server and client auth).
func (ca *CA) Node(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return create(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca.Cert, ca.Key)
}

// Client issues a client certificate named cn with the given DNS names.
func (ca *CA) Client(t testing.TB, cn string, dnsNames ...string) tls.Certificate {
	t.Helper()
	return create(t, clientTemplate(cn, dnsNames), ca.Cert, ca.Key)
}

// SelfSignedClient makes a client certificate named cn that no CA signed.
func SelfSignedClient(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	return create(t, clientTemplate(cn, nil), nil, nil)
}

// WriteFiles writes cert and its key as PEM to dir/name.pem and
// dir/name-key.pem and returns the paths.
func WriteFiles(t testing.TB, dir, name string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, filepath.Join(dir, name+".pem"), encode("CERTIFICATE", cert.Certificate[0]))
	keyFile = writeFile(t, filepath.Join(dir, name+"-key.pem"), encode("EC PRIVATE KEY", der))
	return certFile, keyFile
}

func clientTemplate(cn string, dnsNames []string) *x509.Certificate {
	return &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dnsNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
}

// create makes a key and a certificate for tmpl signed by parent
// (self-signed when parent is nil), with Leaf set.
func create(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func encode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile writes b world-readable: a broker that drops privileges before
// loading its keys (mosquitto run as root) must still read them.
func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
