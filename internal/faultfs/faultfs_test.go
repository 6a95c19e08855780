//go:build linux

package faultfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mount mounts a faultfs of backing on mountpoint, failing the test when it
// cannot (a missing /dev/fuse fails, never skips).
func mount(t *testing.T, backing, mountpoint string) *FS {
	t.Helper()
	f, err := Mount(t, backing, mountpoint)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	return f
}

// cutAndRemount cuts f and mounts its backing directory again on the same
// mount point.
func cutAndRemount(t *testing.T, f *FS) *FS {
	t.Helper()
	if err := f.Cut(); err != nil {
		t.Fatalf("Cut: %v", err)
	}
	return mount(t, f.Backing(), f.Mountpoint())
}

func writeFile(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := fd.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := fd.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func syncPath(t *testing.T, path string) {
	t.Helper()
	fd, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := fd.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", path, err)
	}
}

func wantFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes %q..., want %d bytes %q...", path, len(got), head(got), len(want), head(want))
	}
}

func wantMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: stat error %v, want it missing", path, err)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i%251)
	}
	return b
}

func TestUnsyncedWritesAreLostAtCut(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	mp := f.Mountpoint()
	synced := pattern(10000, 1)
	writeFile(t, filepath.Join(mp, "synced"), synced, true)
	// Appended to a durable file without a sync; and a new file never synced.
	fd, err := os.OpenFile(filepath.Join(mp, "synced"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fd.Write(pattern(5000, 2)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mp, "new"), pattern(3000, 3), false)
	wantFile(t, filepath.Join(mp, "new"), pattern(3000, 3)) // reads see unsynced data

	f2 := cutAndRemount(t, f)
	if _, err := fd.Write([]byte("x")); !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("write after the cut: %v, want EIO", err)
	}
	fd.Close()
	// Counted in whole pages: 5000 bytes appended after 10000 dirty 3 pages.
	if st := f.Stats(); st.DiscardedBytes != 15000-8192+3000 || st.DiscardedOps != 1 {
		t.Errorf("stats %+v, want 9808 bytes and 1 operation discarded", st)
	}
	wantFile(t, filepath.Join(mp, "synced"), synced)
	wantMissing(t, filepath.Join(mp, "new"))
	_ = f2
}

func TestSyncedWritesSurviveCut(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	mp := f.Mountpoint()
	if err := os.MkdirAll(filepath.Join(mp, "d", "e"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := pattern(70000, 7)
	writeFile(t, filepath.Join(mp, "d", "e", "f"), data, true) // its sync commits the mkdirs too
	f = cutAndRemount(t, f)
	wantFile(t, filepath.Join(mp, "d", "e", "f"), data)
	if st := f.Stats(); st != (Stats{}) {
		t.Errorf("fresh mount stats %+v", st)
	}
}

func TestOverwriteOfSyncedDataRevertsAtCut(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	p := filepath.Join(f.Mountpoint(), "f")
	old := pattern(20000, 1)
	writeFile(t, p, old, true)

	fd, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if _, err := fd.WriteAt(bytes.Repeat([]byte{0xEE}, 5000), 3000); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(old)
	copy(want[3000:8000], bytes.Repeat([]byte{0xEE}, 5000))
	wantFile(t, p, want)
	// A truncate and regrowth: the cut-off bytes read as zeros, not as the
	// backing file's.
	if err := fd.Truncate(10000); err != nil {
		t.Fatal(err)
	}
	if err := fd.Truncate(12000); err != nil {
		t.Fatal(err)
	}
	want = append(want[:10000:10000], make([]byte, 2000)...)
	wantFile(t, p, want)

	cutAndRemount(t, f)
	wantFile(t, p, old)
}

func TestTruncateIsDurableAtFsync(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	p := filepath.Join(f.Mountpoint(), "f")
	writeFile(t, p, pattern(9000, 1), true)
	fd, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := fd.Truncate(5000); err != nil {
		t.Fatal(err)
	}
	if _, err := fd.WriteAt([]byte("tail"), 6000); err != nil {
		t.Fatal(err)
	}
	if err := fd.Sync(); err != nil {
		t.Fatal(err)
	}
	want := append(pattern(9000, 1)[:5000], make([]byte, 1000)...)
	want = append(want, "tail"...)
	cutAndRemount(t, f)
	wantFile(t, p, want)
}

// TestRenameIsDurableAfterASync: a rename (and a create, an unlink) is
// undone by the cut until a directory fsync, or any file's fsync, commits
// it.
func TestRenameIsDurableAfterASync(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	mp := f.Mountpoint()
	tmp, final := filepath.Join(mp, "tmp"), filepath.Join(mp, "final")
	writeFile(t, tmp, []byte("v1"), true)
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	wantFile(t, final, []byte("v1"))
	f = cutAndRemount(t, f)
	wantFile(t, tmp, []byte("v1"))
	wantMissing(t, final)

	// With a directory fsync.
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	syncPath(t, mp)
	f = cutAndRemount(t, f)
	wantFile(t, final, []byte("v1"))
	wantMissing(t, tmp)

	// Replacing a file, then the fsync of another file commits it (the
	// journal rule).
	writeFile(t, tmp, []byte("v2"), true)
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mp, "other"), []byte("o"), true)
	f = cutAndRemount(t, f)
	wantFile(t, final, []byte("v2"))
	wantMissing(t, tmp)

	// An unlink without a sync is undone.
	if err := os.Remove(final); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, final)
	cutAndRemount(t, f)
	wantFile(t, final, []byte("v2"))
}

// TestUnlinkedOpenFileStaysReadable: a file removed while open keeps its
// data for the open descriptor, after the removal is committed too.
func TestUnlinkedOpenFileStaysReadable(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	mp := f.Mountpoint()
	p := filepath.Join(mp, "f")
	data := pattern(10000, 5)
	writeFile(t, p, data, true)
	fd, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	syncPath(t, mp)
	wantMissing(t, filepath.Join(f.Backing(), "f"))
	got := make([]byte, len(data))
	if _, err := fd.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read of the unlinked file: %v, equal %v", err, bytes.Equal(got, data))
	}
}

func TestCloseWritesEverythingBack(t *testing.T) {
	backing := t.TempDir()
	f := mount(t, backing, t.TempDir())
	if err := os.Mkdir(filepath.Join(f.Mountpoint(), "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.Mountpoint(), "d", "f"), []byte("unsynced"), false)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(backing, "d", "f"), []byte("unsynced"))
}
