//go:build !linux

package faultfs

import (
	"errors"
	"testing"
)

// FS is a mounted faultfs; there is none outside Linux.
type FS struct{}

// Stats counts what the layer did.
type Stats struct {
	Syncs, SyncedBytes, DiscardedBytes int64
	DiscardedOps                       int
}

// Mount fails: faultfs needs Linux's FUSE.
func Mount(tb testing.TB, backing, mountpoint string) (*FS, error) {
	return nil, errors.New("faultfs: Linux only")
}

// Cut fails outside Linux.
func (f *FS) Cut() error { return errors.New("faultfs: Linux only") }

// Close does nothing outside Linux.
func (f *FS) Close() error { return nil }

// Stats is zero outside Linux.
func (f *FS) Stats() Stats { return Stats{} }

// Mountpoint is empty outside Linux.
func (f *FS) Mountpoint() string { return "" }

// Backing is empty outside Linux.
func (f *FS) Backing() string { return "" }
