package listener

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// defaultPorts apply when a listener URL names no port.
var defaultPorts = map[string]string{
	SchemeTCP: "1883",
	SchemeSSL: "8883",
	SchemeWS:  "8083",
	SchemeWSS: "8084",
}

// ParseURL splits a listener URL into its canonical scheme (tcp, ssl, ws or
// wss), the host:port to bind and, for WebSocket, the HTTP path.
//
// tcp:// and mqtt:// are tcp; ssl://, tls:// and mqtts:// are ssl; ws:// and
// wss:// default to the path /mqtt; a bare host:port is tcp. An empty host
// binds all interfaces; a missing port is the scheme's usual one (1883, 8883,
// 8083, 8084).
func ParseURL(s string) (scheme, hostport, path string, err error) {
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", "", fmt.Errorf("parse listener url: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt":
		scheme = SchemeTCP
	case "ssl", "tls", "mqtts":
		scheme = SchemeSSL
	case "ws":
		scheme = SchemeWS
	case "wss":
		scheme = SchemeWSS
	default:
		return "", "", "", fmt.Errorf("listener url %q: unknown scheme %q", s, u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", "", fmt.Errorf("listener url %q: only scheme, host, port and (for ws) path are allowed", s)
	}
	hostport = u.Host
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		var ae *net.AddrError
		if !errors.As(err, &ae) || ae.Err != "missing port in address" {
			return "", "", "", fmt.Errorf("listener url %q: %w", s, err)
		}
		port = defaultPorts[scheme]
		hostport = net.JoinHostPort(strings.Trim(hostport, "[]"), port)
	}
	if port == "" {
		return "", "", "", fmt.Errorf("listener url %q: empty port", s)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", "", "", fmt.Errorf("listener url %q: %w", s, err)
	}
	path = u.EscapedPath()
	switch scheme {
	case SchemeWS, SchemeWSS:
		if path == "" {
			path = "/mqtt"
		}
	default:
		if path != "" && path != "/" {
			return "", "", "", fmt.Errorf("listener url %q: a %s listener has no path", s, scheme)
		}
		path = ""
	}
	return scheme, hostport, path, nil
}
