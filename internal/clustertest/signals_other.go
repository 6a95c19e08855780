//go:build !unix

package clustertest

import "os"

// Freeze and Thaw have no equivalent where processes cannot be stopped
// (the cluster tests run on Linux; this keeps them compiling elsewhere):
// there they kill the node.
var (
	Freeze os.Signal = os.Kill
	Thaw   os.Signal = os.Kill
)
