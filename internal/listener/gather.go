package listener

import (
	"io"
	"net"
	"sync"
)

// TLSChunk is the most plaintext one TLS record carries.
const TLSChunk = 16 << 10

var gathers = sync.Pool{New: func() any { b := make([]byte, 0, TLSChunk); return &b }}

// WriteGathered writes bufs to w in writes of up to TLSChunk bytes, each
// gathered into one buffer, and consumes what it wrote. It is for TLS:
// crypto/tls makes a record and a system call of every Write, so a queue
// written slice by slice would cost one of each per slice (a PUBLISH's
// header and its payload, two).
func WriteGathered(w io.Writer, bufs *net.Buffers) (int64, error) {
	bp := gathers.Get().(*[]byte)
	defer gathers.Put(bp)
	var total int64
	for len(*bufs) > 0 {
		b := (*bp)[:0]
		for len(*bufs) > 0 && len(b) < TLSChunk {
			p := (*bufs)[0]
			if room := TLSChunk - len(b); len(p) > room {
				b = append(b, p[:room]...)
				(*bufs)[0] = p[room:]
				break
			}
			b = append(b, p...)
			*bufs = (*bufs)[1:]
		}
		*bp = b[:0]
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			// What b held beyond n is lost with the connection: a TLS
			// connection cannot write again after a failed write.
			return total, err
		}
	}
	return total, nil
}
