//go:build unix

package auth

import (
	"os"
	"syscall"
)

// fileOwner returns the owner of a file, for a rewrite to keep it.
func fileOwner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
