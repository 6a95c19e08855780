//go:build linux

package faultfs

import (
	"bufio"
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// TestCutEndsTheMountInOtherNamespaces: a process started in a mount
// namespace of its own (as `ip netns exec` starts one) keeps a copy of the
// mount; Cut still ends the file system, which fails there from then on.
func TestCutEndsTheMountInOtherNamespaces(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	writeFile(t, filepath.Join(f.Mountpoint(), "f"), []byte("synced"), true)
	// A shell in a new mount namespace, with the copy made private so that
	// our unmount does not reach it whatever the propagation of /.
	cmd := exec.Command("sh", "-c", "mount --make-rprivate / && cat "+f.Mountpoint()+"/f && echo && { read x; cat "+f.Mountpoint()+"/f; }")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "synced" {
		t.Fatalf("the other namespace reads %q (%v, %s)", lines.Text(), lines.Err(), stderr.String())
	}
	if err := f.Cut(); err != nil {
		t.Fatalf("Cut: %v", err)
	}
	in.Close()
	if err := cmd.Wait(); err == nil || !strings.Contains(stderr.String(), "not connected") {
		t.Fatalf("a read after the cut in the other namespace: %v, %q; want it to fail with ENOTCONN", err, stderr.String())
	}
}

// TestPOSIXDirSync: with POSIXDirSync a file's fsync makes its data durable
// but not its new name; the directory's fsync makes the name durable, and the
// data synced before it comes with it.
func TestPOSIXDirSync(t *testing.T) {
	backing, mp := t.TempDir(), t.TempDir()
	f, err := Mount(t, backing, mp, POSIXDirSync())
	if err != nil {
		t.Fatal(err)
	}
	remount := func() {
		t.Helper()
		if err := f.Cut(); err != nil {
			t.Fatal(err)
		}
		if f, err = Mount(t, backing, mp, POSIXDirSync()); err != nil {
			t.Fatal(err)
		}
	}
	a, b := filepath.Join(mp, "a"), filepath.Join(mp, "b")
	writeFile(t, a, []byte("a1"), true)
	remount()
	wantMissing(t, a) // the file's fsync did not commit its create

	writeFile(t, a, []byte("a1"), true)
	syncPath(t, mp)
	writeFile(t, b, []byte("b1"), true)
	if err := os.Rename(a, filepath.Join(mp, "a2")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, b, []byte("b2"), true) // data of a durable file: durable
	remount()
	wantFile(t, a, []byte("a1"))
	wantMissing(t, filepath.Join(mp, "a2"))
	wantMissing(t, b)
	if _, err := os.Stat(filepath.Join(backing, stagingDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory left after the remount: %v", err)
	}

	writeFile(t, b, []byte("b1"), true)
	if err := os.Rename(a, filepath.Join(mp, "a2")); err != nil {
		t.Fatal(err)
	}
	syncPath(t, mp)
	writeFile(t, filepath.Join(mp, "a2"), []byte("a2"), true)
	remount()
	wantFile(t, b, []byte("b1"))
	wantFile(t, filepath.Join(mp, "a2"), []byte("a2"))
	wantMissing(t, a)
	if err := os.Mkdir(filepath.Join(mp, stagingDir), 0o755); !errors.Is(err, os.ErrPermission) {
		t.Errorf("mkdir of the staging directory's name: %v, want EPERM", err)
	}
}

// TestUnemulatedOperationsFail: what the layer does not emulate fails rather
// than half works.
func TestUnemulatedOperationsFail(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	p := filepath.Join(f.Mountpoint(), "f")
	writeFile(t, p, []byte("x"), true)
	if err := os.Link(p, p+"2"); err == nil {
		t.Error("hard link made")
	}
	if err := os.Symlink(p, p+"3"); err == nil {
		t.Error("symlink made")
	}
	if err := syscall.Mkfifo(p+"4", 0o644); err == nil {
		t.Error("fifo made")
	}
	fd, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if err := syscall.Fallocate(int(fd.Fd()), 0, 0, 1<<20); err == nil {
		t.Error("fallocate done")
	}
	if err := syscall.Setxattr(p, "user.a", []byte("v"), 0); err == nil {
		t.Error("xattr set")
	}
	ents, err := os.ReadDir(f.Mountpoint())
	if err != nil || len(ents) != 1 {
		t.Fatalf("entries %v, %v; want only f", ents, err)
	}
}

// TestRandomWritesMatchAModel: random writes, truncates and syncs across page
// boundaries read back as a plain byte slice would, and a cut leaves what
// the last sync had.
func TestRandomWritesMatchAModel(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			f := mount(t, t.TempDir(), t.TempDir())
			p := filepath.Join(f.Mountpoint(), "f")
			fd, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			var cur, synced []byte
			for i := range 300 {
				switch r := rng.IntN(10); {
				case r < 6:
					off, n := rng.IntN(5*pageSize), 1+rng.IntN(3*pageSize)
					data := pattern(n, byte(i))
					if _, err := fd.WriteAt(data, int64(off)); err != nil {
						t.Fatal(err)
					}
					if len(cur) < off+n {
						cur = append(cur, make([]byte, off+n-len(cur))...)
					}
					copy(cur[off:], data)
				case r < 8:
					size := rng.IntN(6 * pageSize)
					if err := fd.Truncate(int64(size)); err != nil {
						t.Fatal(err)
					}
					if size < len(cur) {
						cur = cur[:size]
					} else {
						cur = append(cur, make([]byte, size-len(cur))...)
					}
				default:
					if err := fd.Sync(); err != nil {
						t.Fatal(err)
					}
					synced = bytes.Clone(cur)
				}
				if i%25 == 0 {
					wantFile(t, p, cur)
				}
			}
			wantFile(t, p, cur)
			cutAndRemount(t, f)
			wantFile(t, p, synced)
		})
	}
}

// TestCutDuringConcurrentWriters: writers append records and fsync, each
// counting the records its fsyncs acknowledged; a cut in the middle leaves
// every acknowledged record, and the writers all stop with an error.
func TestCutDuringConcurrentWriters(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	const writers, record = 8, 100
	acked := make([]int, writers)
	errs := make(chan error, writers)
	progress := make(chan struct{}, writers)
	for w := range writers {
		dir := filepath.Join(f.Mountpoint(), strconv.Itoa(w))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fd, err := os.Create(filepath.Join(dir, "log"))
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		go func() {
			for i := 0; ; i++ {
				if _, err := fd.Write(pattern(record, byte(i))); err != nil {
					errs <- err
					return
				}
				if i%3 == 0 {
					if err := fd.Sync(); err != nil {
						errs <- err
						return
					}
					acked[w] = i + 1 // read after the writer ends
					select {
					case progress <- struct{}{}:
					default: // enough
					}
				}
			}
		}()
	}
	for range writers * 20 {
		<-progress
	}
	if err := f.Cut(); err != nil {
		t.Fatal(err)
	}
	for range writers {
		if err := <-errs; err == nil {
			t.Fatal("a writer ended without an error")
		}
	}
	mount(t, f.Backing(), f.Mountpoint())
	for w := range writers {
		got, err := os.ReadFile(filepath.Join(f.Mountpoint(), strconv.Itoa(w), "log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < acked[w]*record {
			t.Fatalf("writer %d: %d bytes after the cut, %d records acknowledged", w, len(got), acked[w])
		}
		for i := range acked[w] {
			if !bytes.Equal(got[i*record:(i+1)*record], pattern(record, byte(i))) {
				t.Fatalf("writer %d: record %d differs", w, i)
			}
		}
	}
}
