//go:build !unix

package bench

import "os/exec"

// On this platform the broker shares the bench's process group, the
// open-file limit is left alone and the bench's own CPU time is not
// measured (reported as 0).

func detach(*exec.Cmd) {}

// RaiseFileLimit does nothing here; it reports 0.
func RaiseFileLimit() uint64 { return 0 }

func cpuTime() cpuSample { return cpuSample{} }
