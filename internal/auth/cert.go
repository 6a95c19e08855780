package auth

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Cert authenticates a TLS client certificate verified against Roots: its
// common name or a chosen SAN becomes the username. A client without a
// certificate is left to the next backend; one whose certificate does not
// verify is denied.
type Cert struct {
	Roots *x509.CertPool
	// From is cn, san_dns, san_email or san_uri (the first such SAN).
	From string
}

// NewCert loads the CA bundle at caFile.
func NewCert(caFile, from string) (*Cert, error) {
	switch from {
	case "", "cn", "san_dns", "san_email", "san_uri":
	default:
		return nil, fmt.Errorf("auth.cert.username_from %q: want cn, san_dns, san_email or san_uri", from)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	return &Cert{Roots: pool, From: from}, nil
}

// Name implements Authenticator.
func (c *Cert) Name() string { return "cert" }

// Authenticate implements Authenticator.
func (c *Cert) Authenticate(_ context.Context, r *Request) (Result, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Result{}, nil
	}
	certs := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, x := range certs[1:] {
		inter.AddCert(x)
	}
	deny := Result{Verdict: Deny, Code: packet.ErrNotAuthorized}
	leaf := certs[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.Roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return deny, nil
	}
	name := leaf.Subject.CommonName
	switch c.From {
	case "san_dns":
		name = first(leaf.DNSNames)
	case "san_email":
		name = first(leaf.EmailAddresses)
	case "san_uri":
		name = ""
		if len(leaf.URIs) > 0 {
			name = leaf.URIs[0].String()
		}
	}
	if name == "" {
		return deny, nil
	}
	return Result{Verdict: Allow, Username: name, CertCN: leaf.Subject.CommonName}, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
