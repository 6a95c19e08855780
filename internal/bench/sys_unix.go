//go:build unix

package bench

import (
	"os/exec"
	"syscall"
	"time"
)

// detach starts cmd in a process group of its own, so that a terminal's
// Ctrl-C reaches the bench, which stops the broker in order.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// RaiseFileLimit lifts the soft open-file limit to the hard one (children
// inherit it): every connection is a file descriptor on both sides.
func RaiseFileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return uint64(l.Cur)
}

func cpuTime() cpuSample {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return cpuSample{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), ru.Maxrss}
}
