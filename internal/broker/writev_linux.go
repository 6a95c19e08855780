package broker

import (
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// maxIovecs is the most slices one writev takes (the kernel's IOV_MAX).
const maxIovecs = 1024

const hasWritev = true

// iovecs recycles writev's descriptor arrays. net.Buffers would write with
// the connection's own cached array instead, which the connection keeps
// (up to 16 KiB after a large batch) for as long as it lives, idle or not.
var iovecs = sync.Pool{New: func() any { v := make([]syscall.Iovec, 0, 64); return &v }}

// writev writes bufs to the socket behind raw with writev and consumes what
// was written from bufs. While the socket is full it waits in the runtime
// poller (and so under the write deadline), or with wait unset returns.
func writev(raw syscall.RawConn, bufs *net.Buffers, wait bool) (int64, error) {
	vp := iovecs.Get().(*[]syscall.Iovec)
	var total int64
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for len(*bufs) > 0 {
			iov := (*vp)[:0]
			for _, b := range *bufs {
				if len(b) == 0 {
					continue
				}
				iov = append(iov, syscall.Iovec{Base: &b[0]})
				iov[len(iov)-1].SetLen(len(b))
				if len(iov) == maxIovecs {
					break
				}
			}
			*vp = iov
			if len(iov) == 0 {
				*bufs = nil
				break
			}
			n, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			switch e {
			case 0:
				total += int64(n)
				consume(bufs, int64(n))
			case syscall.EINTR:
			case syscall.EAGAIN:
				return !wait // wait until writable, or stop
			default:
				werr = e
				return true
			}
		}
		return true
	})
	clear(*vp)
	if cap(*vp) <= maxIovecs {
		*vp = (*vp)[:0]
		iovecs.Put(vp)
	}
	if werr != nil {
		return total, &net.OpError{Op: "writev", Net: "tcp", Err: werr}
	}
	return total, err
}

// consume drops the first n bytes of bufs.
func consume(bufs *net.Buffers, n int64) {
	for len(*bufs) > 0 {
		l := int64(len((*bufs)[0]))
		if l > n {
			(*bufs)[0] = (*bufs)[0][n:]
			return
		}
		n -= l
		*bufs = (*bufs)[1:]
	}
}

// unacked is how many bytes the socket behind raw holds that its peer has
// not acknowledged yet (SIOCOUTQ), or -1.
func unacked(raw syscall.RawConn) int {
	n := -1
	raw.Control(func(fd uintptr) {
		var v int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&v))); e == 0 {
			n = int(v)
		}
	})
	return n
}
