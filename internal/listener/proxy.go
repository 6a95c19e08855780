package listener

import (
	"errors"
	"io"
	"net"
)

// proxyHeader is a parsed PROXY protocol header; src and dst are nil when the
// header carries no addresses (v1 UNKNOWN, v2 LOCAL or an unsupported family),
// in which case the real peer addresses stand.
type proxyHeader struct {
	src, dst net.Addr
}

// readProxyHeader reads a PROXY protocol v1 or v2 header from r.
func readProxyHeader(r io.Reader) (proxyHeader, error) {
	return proxyHeader{}, errors.New("not implemented yet")
}
