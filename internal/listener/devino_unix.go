//go:build unix

package listener

import (
	"os"
	"syscall"
)

// devIno is the device and inode of a file, which tell a swapped symlink's
// new target from the old one even with the same size and time.
func devIno(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
