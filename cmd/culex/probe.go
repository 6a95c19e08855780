package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/config"
)

// probeTimeout bounds one probe: above the 5 s one readiness evaluation
// may take (internal/health), so that a slow but passing /readyz passes.
const probeTimeout = 10 * time.Second

const probeUsage = `Usage:
  culex probe URL                 exit 0 when GET URL answers 2xx
  culex probe PATH [serve flags]  the same for PATH (/readyz?scope=node) on
                                  this node's admin listener, found as
                                  culex serve finds it (CULEX_CONFIG or -c
                                  FILE, CULEX_ADMIN_LISTEN, admin.tls)
Gives up after 10 s. For container health checks (images without curl).
`

// probe runs `culex probe URL|PATH`: an HTTP GET that exits 0 on a 2xx
// answer, for health checks in images that have no curl (the distroless
// container image's HEALTHCHECK probes /readyz?scope=node with it).
func probe(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(os.Stderr, probeUsage)
		if len(args) > 0 {
			return nil
		}
		os.Exit(2)
	}
	target, client := args[0], http.DefaultClient
	if strings.HasPrefix(target, "/") {
		var err error
		if target, client, err = adminTarget(target, args[1:], os.Environ()); err != nil {
			return err
		}
	} else if len(args) != 1 {
		fmt.Fprint(os.Stderr, probeUsage)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s: %s", target, resp.Status, body)
	}
	return nil
}

// adminTarget loads the configuration as culex serve would and returns the
// URL of path on its admin listener (a wildcard address probed on
// loopback), with a client for it: over HTTPS when admin.tls is set,
// trusting exactly the certificate in admin.tls.cert_file (the node probes
// itself, under whatever name its certificate carries).
func adminTarget(path string, args, environ []string) (string, *http.Client, error) {
	cfg, err := config.Parse("culex probe", args, environ, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		return "", nil, err
	}
	if cfg.Admin.Listen == "" {
		return "", nil, errors.New("admin.listen is empty: this node serves no admin listener to probe")
	}
	host, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("admin.listen %q: %w", cfg.Admin.Listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	addr := net.JoinHostPort(host, port)
	if cfg.Admin.TLS.CertFile == "" {
		return "http://" + addr + path, http.DefaultClient, nil
	}
	pemBytes, err := os.ReadFile(cfg.Admin.TLS.CertFile)
	if err != nil {
		return "", nil, fmt.Errorf("admin.tls.cert_file: %w", err)
	}
	var own [][]byte
	for b, rest := pem.Decode(pemBytes); b != nil; b, rest = pem.Decode(rest) {
		if b.Type == "CERTIFICATE" {
			own = append(own, b.Bytes)
		}
	}
	if len(own) == 0 {
		return "", nil, fmt.Errorf("admin.tls.cert_file %s: no certificate", cfg.Admin.TLS.CertFile)
	}
	tc := &tls.Config{
		// The name is not checked: the peer must present the certificate
		// of cert_file itself, which is stricter.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 && bytes.Equal(raw[0], own[0]) {
				return nil
			}
			return fmt.Errorf("admin listener at %s does not present the certificate of admin.tls.cert_file", addr)
		},
	}
	return "https://" + addr + path, &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}, nil
}
