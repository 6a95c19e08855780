package storetest

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func unsynced(f *os.File) (uint64, error) {
	var st unix.Cachestat_t
	err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &st, 0) // zero range: the whole file
	if errors.Is(err, unix.ENOSYS) {
		return 0, ErrUnsupported
	}
	if err != nil {
		return 0, fmt.Errorf("cachestat %s: %w", f.Name(), err)
	}
	return st.Dirty + st.Writeback, nil
}
