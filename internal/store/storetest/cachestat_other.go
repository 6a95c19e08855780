//go:build !linux

package storetest

import "os"

func unsynced(*os.File) (uint64, error) { return 0, ErrUnsupported }
