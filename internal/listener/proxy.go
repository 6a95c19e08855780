package listener

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PROXY protocol, as HAProxy's send-proxy and send-proxy-v2 write it
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt). The header
// is read byte-exactly from the connection so that a plain TCP connection can
// still be handed on raw: v2 is a 16-byte fixed part followed by its declared
// length; v1 is a text line read a byte at a time up to CRLF.

// proxyV2Sig starts every v2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	proxyV1Max    = 107 // longest v1 line, CRLF included
	proxyV2Fixed  = 16
	proxyV2Local  = 0x0
	proxyV2Proxy  = 0x1
	proxyV2INET   = 0x1
	proxyV2INET6  = 0x2
	proxyV2Stream = 0x1
)

// proxyHeader is a parsed PROXY protocol header; src and dst are nil when the
// header carries no addresses (v1 UNKNOWN, v2 LOCAL or a family other than
// TCP over IPv4/IPv6), in which case the real peer addresses stand.
type proxyHeader struct {
	src, dst net.Addr
}

var errProxy = errors.New("invalid PROXY protocol header")

// errUntrustedPeer refuses a connection to a PROXY protocol listener from a
// peer outside trusted_proxies: whatever it would send, its header would
// be a claim anyone can make.
var errUntrustedPeer = errors.New("peer not in trusted_proxies")

// untrustedLogEvery is the least time between two warnings about refused
// untrusted peers on one listener; the refusals between are counted into
// the next warning.
const untrustedLogEvery = 10 * time.Second

// Stats are a listener's counters.
type Stats struct {
	// UntrustedPeers counts connections to a PROXY protocol listener refused
	// because the peer is not in trusted_proxies.
	UntrustedPeers uint64
}

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats { return Stats{UntrustedPeers: l.untrusted.Load()} }

// trustedPeer reports whether addr may send a PROXY header.
func (l *Listener) trustedPeer(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	a := ta.AddrPort().Addr().Unmap()
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// refuseUntrusted counts a refused untrusted peer and warns about it, at
// most once per untrustedLogEvery.
func (l *Listener) refuseUntrusted(addr net.Addr) {
	l.untrusted.Add(1)
	if n, ok := l.refusals.allow(time.Now(), untrustedLogEvery); ok {
		l.log.Warn("listener: connection refused: PROXY protocol from a peer not in trusted_proxies",
			"remote", addr, "refused_since_last_warning", n)
	}
}

// rateLog lets one log line through per period and counts the others.
type rateLog struct {
	// mu guards the fields below it.
	mu      sync.Mutex
	last    time.Time
	dropped uint64
}

// allow reports whether a line may be logged at now and how many were
// held back since the last one, this one included.
func (r *rateLog) allow(now time.Time, every time.Duration) (uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped++
	if !r.last.IsZero() && now.Sub(r.last) < every {
		return 0, false
	}
	n := r.dropped
	r.last, r.dropped = now, 0
	return n, true
}

// readProxyHeader reads a PROXY protocol v1 or v2 header from r, consuming
// exactly its bytes. Twelve bytes are enough to tell the versions apart and
// are shorter than the shortest v1 header, "PROXY UNKNOWN\r\n".
func readProxyHeader(r io.Reader) (proxyHeader, error) {
	var buf [proxyV1Max]byte
	if _, err := io.ReadFull(r, buf[:len(proxyV2Sig)]); err != nil {
		return proxyHeader{}, fmt.Errorf("read signature: %w", err)
	}
	if bytes.Equal(buf[:len(proxyV2Sig)], proxyV2Sig) {
		return readProxyV2(r)
	}
	if string(buf[:6]) != "PROXY " || bytes.IndexByte(buf[:len(proxyV2Sig)], '\n') >= 0 {
		return proxyHeader{}, fmt.Errorf("%w: no PROXY signature", errProxy)
	}
	n := len(proxyV2Sig)
	for ; n < proxyV1Max; n++ {
		if _, err := io.ReadFull(r, buf[n:n+1]); err != nil {
			return proxyHeader{}, fmt.Errorf("read v1 line: %w", err)
		}
		if buf[n] == '\n' {
			if buf[n-1] != '\r' {
				return proxyHeader{}, fmt.Errorf("%w: v1 line not ended by CRLF", errProxy)
			}
			return parseProxyV1(string(buf[:n-1]))
		}
	}
	return proxyHeader{}, fmt.Errorf("%w: v1 line longer than %d bytes", errProxy, proxyV1Max)
}

// parseProxyV1 parses a v1 line without its CRLF:
// "PROXY TCP4 192.0.2.1 192.0.2.2 56324 1883".
func parseProxyV1(line string) (proxyHeader, error) {
	f := strings.Split(line, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return proxyHeader{}, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return proxyHeader{}, fmt.Errorf("%w: v1 line %q", errProxy, line)
	}
	src, err1 := parseProxyV1Addr(f[2], f[4], f[1] == "TCP4")
	dst, err2 := parseProxyV1Addr(f[3], f[5], f[1] == "TCP4")
	if err := errors.Join(err1, err2); err != nil {
		return proxyHeader{}, fmt.Errorf("%w: v1 line %q: %w", errProxy, line, err)
	}
	return proxyHeader{src: src, dst: dst}, nil
}

func parseProxyV1Addr(ip, port string, v4 bool) (*net.TCPAddr, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, err
	}
	if a.Is4() != v4 || a.Zone() != "" {
		return nil, fmt.Errorf("address %s does not match the protocol", ip)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return nil, fmt.Errorf("bad port %q", port)
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(p))), nil
}

// readProxyV2 reads the rest of a v2 header once its signature is read: the
// version/command and family bytes, the length, the addresses and the TLVs,
// which are skipped.
func readProxyV2(r io.Reader) (proxyHeader, error) {
	var fixed [4]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return proxyHeader{}, fmt.Errorf("read v2 header: %w", err)
	}
	verCmd, fam := fixed[0], fixed[1]
	length := int(binary.BigEndian.Uint16(fixed[2:]))
	if verCmd>>4 != 2 {
		return proxyHeader{}, fmt.Errorf("%w: v2 version %d", errProxy, verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd != proxyV2Local && cmd != proxyV2Proxy {
		return proxyHeader{}, fmt.Errorf("%w: v2 command %d", errProxy, cmd)
	}
	var h proxyHeader
	var addrs [36]byte // two IPv6 addresses and two ports
	n := 0
	if cmd == proxyV2Proxy && fam&0xf == proxyV2Stream {
		switch fam >> 4 {
		case proxyV2INET:
			n = 12
		case proxyV2INET6:
			n = 36
		}
	}
	if length < n {
		return proxyHeader{}, fmt.Errorf("%w: v2 length %d too short for family %#x", errProxy, length, fam)
	}
	if _, err := io.ReadFull(r, addrs[:n]); err != nil {
		return proxyHeader{}, fmt.Errorf("read v2 addresses: %w", err)
	}
	switch n {
	case 12:
		h.src = v2Addr(netip.AddrFrom4([4]byte(addrs[0:4])), addrs[8:10])
		h.dst = v2Addr(netip.AddrFrom4([4]byte(addrs[4:8])), addrs[10:12])
	case 36:
		h.src = v2Addr(netip.AddrFrom16([16]byte(addrs[0:16])), addrs[32:34])
		h.dst = v2Addr(netip.AddrFrom16([16]byte(addrs[16:32])), addrs[34:36])
	}
	if _, err := io.CopyN(io.Discard, r, int64(length-n)); err != nil {
		return proxyHeader{}, fmt.Errorf("read v2 TLVs: %w", err)
	}
	return h, nil
}

func v2Addr(a netip.Addr, port []byte) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, binary.BigEndian.Uint16(port)))
}
