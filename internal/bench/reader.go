package bench

import (
	"errors"
	"fmt"
	"io"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Read buffers start small so that tens of thousands of idle connections
// cost little, and double (up to readBufMax) when a read fills them.
const (
	readBufMin = 512
	readBufMax = 64 << 10
	maxPacket  = 16 << 20
)

// pktReader splits a byte stream into packets. The body it returns aliases
// its buffer and is valid until the next call, so handlers must not keep it.
type pktReader struct {
	r    io.Reader
	buf  []byte
	s, e int // unread bytes are buf[s:e]
}

func newPktReader(r io.Reader) *pktReader {
	return &pktReader{r: r, buf: make([]byte, readBufMin)}
}

func (pr *pktReader) next() (packet.FixedHeader, []byte, error) {
	for {
		need := 0
		if pr.e > pr.s {
			fh, n, err := packet.ParseFixedHeader(pr.buf[pr.s:pr.e])
			switch {
			case err == nil:
				total := n + fh.Remaining
				if pr.e-pr.s >= total {
					body := pr.buf[pr.s+n : pr.s+total]
					pr.s += total
					return fh, body, nil
				}
				if fh.Remaining > maxPacket {
					return fh, nil, fmt.Errorf("%s of %d bytes: %w", fh.Type, fh.Remaining, packet.ErrPacketTooLarge)
				}
				need = total
			case !errors.Is(err, packet.ErrIncomplete):
				return fh, nil, err
			}
		}
		if err := pr.fill(need); err != nil {
			return packet.FixedHeader{}, nil, err
		}
	}
}

// buffered reports whether a whole packet is already buffered, so that
// next will not block.
func (pr *pktReader) buffered() bool {
	if pr.e == pr.s {
		return false
	}
	fh, n, err := packet.ParseFixedHeader(pr.buf[pr.s:pr.e])
	return err != nil && !errors.Is(err, packet.ErrIncomplete) || err == nil && pr.e-pr.s >= n+fh.Remaining
}

// fill reads at least one byte, first making room for a packet of need bytes.
func (pr *pktReader) fill(need int) error {
	if pr.s == pr.e {
		pr.s, pr.e = 0, 0
	}
	if need > len(pr.buf) || (pr.e == len(pr.buf) && pr.s == 0) {
		nb := make([]byte, max(need, min(2*len(pr.buf), readBufMax), len(pr.buf)+readBufMin))
		pr.e = copy(nb, pr.buf[pr.s:pr.e])
		pr.s, pr.buf = 0, nb
	} else if pr.e == len(pr.buf) || pr.s+need > len(pr.buf) {
		pr.e = copy(pr.buf, pr.buf[pr.s:pr.e])
		pr.s = 0
	}
	n, err := pr.r.Read(pr.buf[pr.e:])
	pr.e += n
	if n > 0 {
		if pr.e == len(pr.buf) && len(pr.buf) < readBufMax {
			nb := make([]byte, min(2*len(pr.buf), readBufMax))
			pr.e = copy(nb, pr.buf[pr.s:pr.e])
			pr.s, pr.buf = 0, nb
		}
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}
