package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Target is where and how to connect: the parsed --url or --host/--port and
// the transport options.
type Target struct {
	Scheme  string // tcp, ssl, ws or wss
	Addr    string // host:port
	Path    string // WebSocket path
	TLS     *tls.Config
	Resumed atomic.Int64  // TLS handshakes that resumed a session
	Timeout time.Duration // dial + TLS + WebSocket handshake

	locals []net.IP // source addresses, used round-robin
	next   atomic.Uint64

	// SubAddrs (--sub-addrs), when set, are where subscribers connect
	// instead of Addr, subscriber i to SubAddrs[i % len]: the nodes of a
	// cluster other than the publishers' (culex bench compare --cluster).
	SubAddrs []string
}

// TLSOptions are the --cafile, --cert, --key and --insecure flags.
type TLSOptions struct {
	CAFile, CertFile, KeyFile, ServerName string
	Insecure                              bool
	NoResume                              bool   // no session cache: every handshake is a full one
	Groups                                string // key exchange groups offered, comma-separated; empty: Go's default
}

// tlsGroups are the names --tls-groups takes.
var tlsGroups = map[string]tls.CurveID{
	"x25519": tls.X25519, "p256": tls.CurveP256, "p384": tls.CurveP384, "p521": tls.CurveP521,
	"x25519mlkem768": tls.X25519MLKEM768,
}

// ParseTarget resolves a broker URL (tcp://, mqtt://, ssl://, tls://,
// mqtts://, ws://, wss://); a bare host:port means tcp.
func ParseTarget(raw string, topt TLSOptions, locals []net.IP) (*Target, error) {
	if !strings.Contains(raw, "://") {
		raw = "tcp://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("broker url %q: %w", raw, err)
	}
	t := &Target{Path: u.Path, locals: locals, Timeout: 10 * time.Second}
	var port string
	switch u.Scheme {
	case "tcp", "mqtt":
		t.Scheme, port = "tcp", "1883"
	case "ssl", "tls", "mqtts":
		t.Scheme, port = "ssl", "8883"
	case "ws":
		t.Scheme, port = "ws", "80"
	case "wss":
		t.Scheme, port = "wss", "443"
	default:
		return nil, fmt.Errorf("broker url %q: unknown scheme %q", raw, u.Scheme)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	host := u.Hostname()
	if host == "" {
		host = "127.0.0.1"
	}
	t.Addr = net.JoinHostPort(host, port)
	if t.Path == "" {
		t.Path = "/mqtt"
	}
	if t.Scheme == "ssl" || t.Scheme == "wss" {
		if t.TLS, err = topt.config(host); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (o TLSOptions) config(host string) (*tls.Config, error) {
	c := &tls.Config{ServerName: host, InsecureSkipVerify: o.Insecure}
	if !o.NoResume {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	if o.Groups != "" {
		for _, g := range strings.Split(o.Groups, ",") {
			id, ok := tlsGroups[strings.ToLower(strings.TrimSpace(g))]
			if !ok {
				return nil, fmt.Errorf("--tls-groups: unknown group %q (x25519, p256, p384, p521, x25519mlkem768)", g)
			}
			c.CurvePreferences = append(c.CurvePreferences, id)
		}
	}
	if o.ServerName != "" {
		c.ServerName = o.ServerName
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no certificates", o.CAFile)
		}
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Dial opens one transport connection: TCP from the next source address,
// then TLS and the WebSocket handshake as the scheme asks. It never takes
// longer than t.Timeout.
func (t *Target) Dial(ctx context.Context) (net.Conn, error) { return t.DialAddr(ctx, t.Addr) }

// DialAddr is Dial to addr (host:port) instead of t.Addr.
func (t *Target) DialAddr(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	d := net.Dialer{}
	if len(t.locals) > 0 {
		ip := t.locals[(t.next.Add(1)-1)%uint64(len(t.locals))]
		d.LocalAddr = &net.TCPAddr{IP: ip}
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			rc.Control(bindNoPort)
			return nil
		}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	if t.TLS != nil {
		tc := tls.Client(nc, t.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		if tc.ConnectionState().DidResume {
			t.Resumed.Add(1)
		}
		nc = tc
	}
	if t.Scheme == "ws" || t.Scheme == "wss" {
		if nc, err = wsHandshake(nc, addr, t.Path); err != nil {
			return nil, err
		}
	}
	nc.SetDeadline(time.Time{})
	return nc, nil
}

// ParseLocalAddrs parses --local-addrs: a comma-separated list of IPv4
// addresses or ranges "127.0.0.2-127.0.0.9".
func ParseLocalAddrs(s string) ([]net.IP, error) {
	var out []net.IP
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		a := net.ParseIP(lo).To4()
		b := a
		if isRange {
			b = net.ParseIP(hi).To4()
		}
		if a == nil || b == nil {
			return nil, fmt.Errorf("local address %q: want IPv4 or a range a.b.c.d-e.f.g.h", f)
		}
		x, y := binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(b)
		if y < x || y-x > 1<<16 {
			return nil, fmt.Errorf("local address range %q: empty or over 65536 addresses", f)
		}
		for v := x; v <= y; v++ {
			ip := make(net.IP, 4)
			binary.BigEndian.PutUint32(ip, v)
			out = append(out, ip)
		}
	}
	return out, nil
}
