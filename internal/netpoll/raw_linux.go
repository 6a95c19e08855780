package netpoll

import (
	"net"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is the most slices one writev takes (the kernel's IOV_MAX).
const maxIovecs = 1024

const hasWritev = true

// The engine's own socket calls never block (the descriptors are
// non-blocking), so they are made as raw system calls. A system call made
// the usual way tells the scheduler it may block: the goroutine's processor
// is handed to another thread when the call takes longer than sysmon's
// 20 µs tick, which on loopback a writev often does (the kernel runs the
// receiving side inside it). Each such handoff wakes a thread and keeps
// sysmon polling at its shortest interval. At fan-out 1:1000 QoS 2 this
// cut the broker's context switches to a third and brought its p99 with
// 64 B payloads below Mosquitto's (docs/perf-log.md, "Latency at a
// fixed rate").

// writevOp is the state of one writev through a RawConn, pooled with the
// func the RawConn calls: a closure capturing the call's results would be
// allocated at every call. Its iovec array is reused too; net.Buffers
// would write with the connection's own cached array instead, which the
// connection keeps (up to 16 KiB after a large batch) for as long as it
// lives, idle or not.
type writevOp struct {
	fn    func(fd uintptr) bool // op.write
	iov   []unix.Iovec
	bufs  net.Buffers
	one   [1][]byte // the buffers of writeOne
	wait  bool
	total int64
	err   error
}

var writevOps = sync.Pool{New: func() any {
	op := &writevOp{iov: make([]unix.Iovec, 0, 64)}
	op.fn = op.write
	return op
}}

// Writev writes bufs to the socket behind raw with writev and consumes what
// was written from bufs. While the socket is full it waits in the runtime
// poller (and so under the write deadline), or with wait unset returns.
func Writev(raw syscall.RawConn, bufs *net.Buffers, wait bool) (int64, error) {
	op := writevOps.Get().(*writevOp)
	total, err := op.run(raw, *bufs, wait)
	*bufs = op.bufs
	op.done()
	return total, err
}

// writeOne is Writev of b alone, without a net.Buffers of its own (which
// the pooled op would make escape: an allocation per write).
func writeOne(raw syscall.RawConn, b []byte, wait bool) (int64, error) {
	op := writevOps.Get().(*writevOp)
	op.one[0] = b
	total, err := op.run(raw, op.one[:], wait)
	op.one[0] = nil
	op.done()
	return total, err
}

// run writes bufs through raw; op.bufs is left with what was not written.
func (op *writevOp) run(raw syscall.RawConn, bufs net.Buffers, wait bool) (int64, error) {
	op.bufs, op.wait = bufs, wait
	err := raw.Write(op.fn)
	total, werr := op.total, op.err
	if werr != nil {
		return total, &net.OpError{Op: "writev", Net: "tcp", Err: werr}
	}
	return total, err
}

// done clears op, keeping no buffer of the caller's, and pools it.
func (op *writevOp) done() {
	clear(op.iov)
	op.bufs, op.total, op.err = nil, 0, nil
	if cap(op.iov) <= maxIovecs {
		op.iov = op.iov[:0]
		writevOps.Put(op)
	}
}

func (op *writevOp) write(fd uintptr) bool {
	for len(op.bufs) > 0 {
		iov := op.iov[:0]
		for _, b := range op.bufs {
			if len(b) == 0 {
				continue
			}
			iov = append(iov, unix.Iovec{Base: &b[0]})
			iov[len(iov)-1].SetLen(len(b))
			if len(iov) == maxIovecs {
				break
			}
		}
		op.iov = iov
		if len(iov) == 0 {
			op.bufs = nil
			break
		}
		n, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		switch e {
		case 0:
			op.total += int64(n)
			consume(&op.bufs, int64(n))
		case unix.EINTR:
		case unix.EAGAIN:
			return !op.wait // wait until writable, or stop
		default:
			op.err = e
			return true
		}
	}
	return true
}

// ErrAgain is what ReadFD returns when the socket is empty.
const ErrAgain = unix.EAGAIN

// ReadFD reads a non-blocking descriptor once (retrying an interrupted
// call), as a raw system call (see above).
func ReadFD(fd uintptr, b []byte) (int, error) {
	return rawIO(unix.SYS_READ, fd, b)
}

func rawIO(call, fd uintptr, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		n, _, e := unix.RawSyscall(call, fd, uintptr(p), uintptr(len(b)))
		switch e {
		case 0:
			return int(n), nil
		case unix.EINTR:
		default:
			return 0, e
		}
	}
}

// epollNow returns the events epfd holds, without waiting, as a raw
// system call (see above).
func epollNow(epfd int, evs []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
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
		if v, err := unix.IoctlGetInt(int(fd), unix.TIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}
