//go:build unix

package clustertest

import (
	"os"
	"syscall"
)

// Freeze and Thaw stop and resume a node's process (Node.Signal): a node
// that is alive but answers nothing, as under a long GC pause or a hung
// disk.
var (
	Freeze os.Signal = syscall.SIGSTOP
	Thaw   os.Signal = syscall.SIGCONT
)
