package listener

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/culexmq/culex/internal/config"
)

// loadTLS builds the server TLS configuration of an ssl or wss listener.
//
// ClientAuth none (or empty with no ClientCAFile) asks for no certificate;
// request asks for one and verifies it against ClientCAFile when given (empty
// with a ClientCAFile means request); require demands a certificate that
// verifies against ClientCAFile, which must then be set.
func loadTLS(c config.TLS) (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load key pair: %w", err)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client ca %s: no PEM certificates", c.ClientCAFile)
		}
		conf.ClientCAs = pool
	}
	withCA := conf.ClientCAs != nil
	switch c.ClientAuth {
	case "none":
		conf.ClientAuth = tls.NoClientCert
	case "":
		if withCA {
			conf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	case "request":
		conf.ClientAuth = tls.RequestClientCert
		if withCA {
			conf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	case "require":
		if !withCA {
			return nil, errors.New("tls: client_auth require needs client_ca_file")
		}
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("tls: client_auth %q: want none, request or require", c.ClientAuth)
	}
	return conf, nil
}
