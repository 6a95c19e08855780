package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
)

// isTLSError reports whether err comes from a TLS handshake.
func isTLSError(err error) bool {
	var (
		rec   tls.RecordHeaderError
		alert tls.AlertError
		unk   x509.UnknownAuthorityError
		host  x509.HostnameError
		inv   x509.CertificateInvalidError
		ver   *tls.CertificateVerificationError
	)
	return errors.As(err, &rec) || errors.As(err, &alert) || errors.As(err, &unk) ||
		errors.As(err, &host) || errors.As(err, &inv) || errors.As(err, &ver) ||
		strings.Contains(err.Error(), "tls:")
}
