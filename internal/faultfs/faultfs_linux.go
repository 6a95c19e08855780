//go:build linux

package faultfs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// pageSize is the granularity of the unsynced data kept in memory.
const pageSize = 4096

// FS is a mounted faultfs.
type FS struct {
	backing    string
	mountpoint string
	server     *fuse.Server

	mu      sync.Mutex
	root    *entry
	nextIno uint64
	// live holds every entry that may still be read or synced: those in the
	// tree and those unlinked but open.
	live    map[*entry]struct{}
	journal []op
	down    bool // cut or closed: every operation fails with EIO
	stats   Stats
}

// Stats counts what the layer did.
type Stats struct {
	Syncs       int64 // fsync and fdatasync calls (files and directories)
	SyncedBytes int64 // file bytes written to the backing directory by them
	// Set by Cut: the file data dropped, counted in the 4 KiB pages written
	// since each file's last sync (up to the file's end), and the namespace
	// operations not yet committed.
	DiscardedBytes int64
	DiscardedOps   int
}

// entry is a file or directory as the program sees it, and what of it is
// durable.
type entry struct {
	ino   uint64
	mode  uint32 // type and permission bits
	mtime time.Time
	ctime time.Time

	// The live namespace: parent is nil once unlinked (and for the root).
	parent   *entry
	name     string
	children map[string]*entry // directories

	// The durable namespace: where the entry is in the backing directory.
	durable   bool
	durParent *entry
	durName   string

	// File data. The backing file holds backSize bytes, of which the first
	// validBack are still the file's (a truncate may cut them shorter);
	// dirty pages override them, the rest up to size reads as zeros. Bytes
	// of dirty pages beyond size are zero.
	back      *os.File
	backSize  int64
	validBack int64
	size      int64
	dirty     map[int64][]byte
	opens     int
}

func (e *entry) isDir() bool { return e.mode&syscall.S_IFMT == syscall.S_IFDIR }

type opKind int

const (
	opCreate opKind = iota
	opMkdir
	opUnlink
	opRmdir
	opRename
)

// op is one namespace operation of the journal.
type op struct {
	kind      opKind
	parent    *entry
	name      string
	e         *entry
	newParent *entry // rename
	newName   string // rename
	replaced  *entry // rename over an existing entry
	perm      os.FileMode
}

// Mount mounts a faultfs of backing (a directory, created if missing) on
// mountpoint (created if missing). With tb non-nil, the test's cleanup closes
// it. It needs /dev/fuse and root.
func Mount(tb testing.TB, backing, mountpoint string) (*FS, error) {
	var err error
	if backing, err = filepath.Abs(backing); err != nil {
		return nil, err
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return nil, err
	}
	for _, d := range []string{backing, mountpoint} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("faultfs: %w", err)
		}
	}
	f := &FS{backing: backing, mountpoint: mountpoint, nextIno: 1, live: map[*entry]struct{}{}}
	f.root = f.newEntry(syscall.S_IFDIR | 0o755)
	f.root.durable = true
	if err := f.load(f.root, backing); err != nil {
		return nil, err
	}
	sec := time.Second
	opts := &gofs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true, // as root, without fusermount
			FsName:            "faultfs:" + backing,
			Name:              "faultfs",
			DisableXAttrs:     true,
		},
	}
	srv, err := gofs.Mount(mountpoint, &node{fs: f, e: f.root}, opts)
	if err != nil {
		f.closeBacks()
		return nil, fmt.Errorf("faultfs: mount %s: %w", mountpoint, err)
	}
	f.server = srv
	if tb != nil {
		tb.Cleanup(func() {
			if err := f.Close(); err != nil {
				tb.Errorf("faultfs: %v", err)
			}
		})
	}
	return f, nil
}

// load reads the backing directory dir into the tree under d.
func (f *FS) load(d *entry, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("faultfs: %w", err)
	}
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("faultfs: %w", err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		typ := st.Mode & syscall.S_IFMT
		if typ != syscall.S_IFREG && typ != syscall.S_IFDIR {
			return fmt.Errorf("faultfs: %s: only regular files and directories are supported", p)
		}
		e := f.newEntry(st.Mode)
		e.mtime = fi.ModTime()
		e.durable, e.durParent, e.durName = true, d, de.Name()
		e.parent, e.name = d, de.Name()
		d.children[de.Name()] = e
		if typ == syscall.S_IFDIR {
			if err := f.load(e, p); err != nil {
				return err
			}
			continue
		}
		e.backSize, e.validBack, e.size = fi.Size(), fi.Size(), fi.Size()
	}
	return nil
}

func (f *FS) newEntry(mode uint32) *entry {
	now := time.Now()
	e := &entry{ino: f.nextIno, mode: mode, mtime: now, ctime: now}
	f.nextIno++
	if e.isDir() {
		e.children = map[string]*entry{}
	}
	f.live[e] = struct{}{}
	return e
}

// Mountpoint is where the file system is mounted.
func (f *FS) Mountpoint() string { return f.mountpoint }

// Backing is the backing directory.
func (f *FS) Backing() string { return f.backing }

// Stats returns the counts so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Cut is the power loss: from this instant every operation on the mount
// fails with EIO, every write and namespace operation not yet synced is
// dropped, and the file system is unmounted (lazily if a process still holds
// a file open; its operations keep failing). Stats then says what was
// dropped.
func (f *FS) Cut() error {
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		return errors.New("faultfs: already cut or closed")
	}
	f.down = true
	for e := range f.live {
		for idx := range e.dirty {
			f.stats.DiscardedBytes += min(pageSize, e.size-idx*pageSize)
		}
	}
	f.stats.DiscardedOps = len(f.journal)
	f.journal = nil
	f.closeBacks()
	f.mu.Unlock()
	return f.unmount()
}

// Close is an orderly shutdown: it commits the journal, writes every file's
// unsynced data to the backing directory (as unmounting a real file system
// does), and unmounts. After Cut it only waits for the mount to go away.
func (f *FS) Close() error {
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		return f.wait()
	}
	err := f.commit()
	for e := range f.live {
		if err == nil && !e.isDir() {
			err = f.syncData(e)
		}
	}
	f.down = true
	f.closeBacks()
	f.mu.Unlock()
	if uerr := f.unmount(); err == nil {
		err = uerr
	}
	if werr := f.wait(); err == nil {
		err = werr
	}
	return err
}

func (f *FS) closeBacks() {
	for e := range f.live {
		if e.back != nil {
			e.back.Close()
			e.back = nil
		}
	}
	f.live = map[*entry]struct{}{}
}

// unmount detaches the mount; the serving loop ends once no process holds a
// file of it open.
func (f *FS) unmount() error {
	err := syscall.Unmount(f.mountpoint, 0)
	if errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(f.mountpoint, syscall.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("faultfs: unmount %s: %w", f.mountpoint, err)
	}
	return nil
}

// wait waits, bounded, for the serving loop to end.
func (f *FS) wait() error {
	done := make(chan struct{})
	go func() {
		f.server.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("faultfs: %s: a process still holds a file of the unmounted file system open", f.mountpoint)
	}
}

// durPath is the entry's path in the backing directory.
func (f *FS) durPath(e *entry) string {
	if e == f.root {
		return f.backing
	}
	return filepath.Join(f.durPath(e.durParent), e.durName)
}

// commit applies the journal to the backing directory, in order.
func (f *FS) commit() error {
	for len(f.journal) > 0 {
		o := f.journal[0]
		f.journal = f.journal[1:]
		if err := f.apply(o); err != nil {
			return err
		}
	}
	f.journal = nil
	return nil
}

func (f *FS) apply(o op) error {
	p := filepath.Join(f.durPath(o.parent), o.name)
	switch o.kind {
	case opCreate:
		fd, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, o.perm)
		if err != nil {
			return err
		}
		o.e.back = fd
		o.e.durable, o.e.durParent, o.e.durName = true, o.parent, o.name
		return fd.Chmod(o.perm) // whatever the umask
	case opMkdir:
		if err := os.Mkdir(p, o.perm); err != nil {
			return err
		}
		o.e.durable, o.e.durParent, o.e.durName = true, o.parent, o.name
		return os.Chmod(p, o.perm)
	case opUnlink, opRmdir:
		if err := f.forget(o.e); err != nil {
			return err
		}
		return os.Remove(p)
	case opRename:
		if o.replaced != nil {
			if err := f.forget(o.replaced); err != nil {
				return err
			}
		}
		if err := os.Rename(p, filepath.Join(f.durPath(o.newParent), o.newName)); err != nil {
			return err
		}
		o.e.durParent, o.e.durName = o.newParent, o.newName
	}
	return nil
}

// forget is called before e's backing entry is removed: an open file keeps
// its backing file open for reads.
func (f *FS) forget(e *entry) error {
	if !e.isDir() && e.opens > 0 && e.back == nil {
		if err := f.openBack(e); err != nil {
			return err
		}
	}
	e.durable = false
	f.dropIfGone(e)
	return nil
}

// dropIfGone releases an entry no name and no open file reach any more.
func (f *FS) dropIfGone(e *entry) {
	if e.parent != nil || e == f.root || e.opens > 0 {
		return
	}
	e.dirty = nil
	if e.durable {
		return // its removal is still in the journal
	}
	if e.back != nil {
		e.back.Close()
		e.back = nil
	}
	delete(f.live, e)
}

func (f *FS) openBack(e *entry) error {
	fd, err := os.OpenFile(f.durPath(e), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	e.back = fd
	return nil
}

// readBack reads the still valid part of the backing file at off into p and
// zeroes the rest of p.
func (f *FS) readBack(e *entry, p []byte, off int64) error {
	n := int(max(0, min(int64(len(p)), e.validBack-off)))
	if n > 0 {
		if e.back == nil {
			if err := f.openBack(e); err != nil {
				return err
			}
		}
		if _, err := e.back.ReadAt(p[:n], off); err != nil {
			return err
		}
	}
	clear(p[n:])
	return nil
}

func (f *FS) readAt(e *entry, dest []byte, off int64) (int, error) {
	if off >= e.size {
		return 0, nil
	}
	dest = dest[:min(int64(len(dest)), e.size-off)]
	for done := 0; done < len(dest); {
		pos := off + int64(done)
		idx, in := pos/pageSize, pos%pageSize
		chunk := dest[done:min(len(dest), done+int(pageSize-in))]
		if pg, ok := e.dirty[idx]; ok {
			copy(chunk, pg[in:])
		} else if err := f.readBack(e, chunk, pos); err != nil {
			return done, err
		}
		done += len(chunk)
	}
	return len(dest), nil
}

func (f *FS) writeAt(e *entry, data []byte, off int64) error {
	if e.dirty == nil {
		e.dirty = map[int64][]byte{}
	}
	for done := 0; done < len(data); {
		pos := off + int64(done)
		idx, in := pos/pageSize, pos%pageSize
		pg, ok := e.dirty[idx]
		if !ok {
			pg = make([]byte, pageSize)
			if err := f.readBack(e, pg, idx*pageSize); err != nil {
				return err
			}
			e.dirty[idx] = pg
		}
		done += copy(pg[in:], data[done:])
	}
	e.size = max(e.size, off+int64(len(data)))
	e.mtime = time.Now()
	return nil
}

func (f *FS) truncate(e *entry, size int64) {
	if size < e.size {
		for idx, pg := range e.dirty {
			switch start := idx * pageSize; {
			case start >= size:
				delete(e.dirty, idx)
			case start+pageSize > size:
				clear(pg[size-start:])
			}
		}
		e.validBack = min(e.validBack, size)
	}
	e.size = size
	e.mtime = time.Now()
}

// syncData makes the file's data durable: writes its dirty pages and size to
// the backing file and fsyncs it. A file with no durable name has nowhere to
// go: its data stays in memory until the cut.
func (f *FS) syncData(e *entry) error {
	if !e.durable || (len(e.dirty) == 0 && e.validBack == e.backSize && e.size == e.backSize) {
		return nil
	}
	if e.back == nil {
		if err := f.openBack(e); err != nil {
			return err
		}
	}
	length := e.backSize
	if e.validBack < e.backSize {
		if err := e.back.Truncate(e.validBack); err != nil {
			return err
		}
		length = e.validBack
	}
	for _, idx := range slices.Sorted(maps.Keys(e.dirty)) {
		n := min(pageSize, e.size-idx*pageSize)
		if _, err := e.back.WriteAt(e.dirty[idx][:n], idx*pageSize); err != nil {
			return err
		}
		length = max(length, idx*pageSize+n)
		f.stats.SyncedBytes += n
	}
	if length != e.size {
		if err := e.back.Truncate(e.size); err != nil {
			return err
		}
	}
	if err := e.back.Chmod(os.FileMode(e.mode & 0o7777)); err != nil {
		return err
	}
	if err := e.back.Sync(); err != nil {
		return err
	}
	e.dirty = nil
	e.backSize, e.validBack = e.size, e.size
	return nil
}

// node is the go-fuse face of an entry.
type node struct {
	gofs.Inode
	fs *FS
	e  *entry
}

// handle is an open file, counted so an unlinked open file stays readable.
type handle struct{}

var (
	_ gofs.NodeLookuper  = (*node)(nil)
	_ gofs.NodeGetattrer = (*node)(nil)
	_ gofs.NodeSetattrer = (*node)(nil)
	_ gofs.NodeOpener    = (*node)(nil)
	_ gofs.NodeCreater   = (*node)(nil)
	_ gofs.NodeReader    = (*node)(nil)
	_ gofs.NodeWriter    = (*node)(nil)
	_ gofs.NodeFsyncer   = (*node)(nil)
	_ gofs.NodeReleaser  = (*node)(nil)
	_ gofs.NodeMkdirer   = (*node)(nil)
	_ gofs.NodeUnlinker  = (*node)(nil)
	_ gofs.NodeRmdirer   = (*node)(nil)
	_ gofs.NodeRenamer   = (*node)(nil)
	_ gofs.NodeReaddirer = (*node)(nil)
	_ gofs.NodeStatfser  = (*node)(nil)
)

// lock takes the file system's lock; it fails once the file system is down.
func (n *node) lock() syscall.Errno {
	n.fs.mu.Lock()
	if n.fs.down {
		n.fs.mu.Unlock()
		return syscall.EIO
	}
	return 0
}

func (n *node) unlock() { n.fs.mu.Unlock() }

func fillAttr(e *entry, a *fuse.Attr) {
	a.Ino = e.ino
	a.Mode = e.mode
	a.Size = uint64(e.size)
	a.Blocks = (uint64(e.size) + 511) / 512
	a.Blksize = pageSize
	a.Nlink = 1
	if e.isDir() {
		a.Nlink = 2
	}
	a.Uid, a.Gid = uint32(os.Getuid()), uint32(os.Getgid())
	a.SetTimes(&e.mtime, &e.mtime, &e.ctime)
}

func (n *node) child(ctx context.Context, c *entry, out *fuse.EntryOut) *gofs.Inode {
	fillAttr(c, &out.Attr)
	return n.NewInode(ctx, &node{fs: n.fs, e: c}, gofs.StableAttr{Mode: c.mode & syscall.S_IFMT, Ino: c.ino})
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return nil, errno
	}
	defer n.unlock()
	c, ok := n.e.children[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	return n.child(ctx, c, out), 0
}

func (n *node) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := n.lock(); errno != 0 {
		return errno
	}
	defer n.unlock()
	fillAttr(n.e, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno := n.lock(); errno != 0 {
		return errno
	}
	defer n.unlock()
	if size, ok := in.GetSize(); ok {
		if n.e.isDir() {
			return syscall.EISDIR
		}
		n.fs.truncate(n.e, int64(size))
	}
	if mode, ok := in.GetMode(); ok {
		n.e.mode = n.e.mode&syscall.S_IFMT | mode&0o7777
		n.e.ctime = time.Now()
	}
	if mtime, ok := in.GetMTime(); ok {
		n.e.mtime = mtime
	}
	fillAttr(n.e, &out.Attr)
	return 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return nil, 0, errno
	}
	defer n.unlock()
	if flags&syscall.O_TRUNC != 0 {
		n.fs.truncate(n.e, 0)
	}
	n.e.opens++
	return &handle{}, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return nil, nil, 0, errno
	}
	defer n.unlock()
	if _, ok := n.e.children[name]; ok {
		return nil, nil, 0, syscall.EEXIST
	}
	c := n.fs.newEntry(syscall.S_IFREG | mode&0o7777)
	c.parent, c.name = n.e, name
	c.opens = 1
	n.e.children[name] = c
	n.fs.journal = append(n.fs.journal, op{kind: opCreate, parent: n.e, name: name, e: c, perm: os.FileMode(mode & 0o777)})
	return n.child(ctx, c, out), &handle{}, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return nil, errno
	}
	defer n.unlock()
	if _, ok := n.e.children[name]; ok {
		return nil, syscall.EEXIST
	}
	c := n.fs.newEntry(syscall.S_IFDIR | mode&0o7777)
	c.parent, c.name = n.e, name
	n.e.children[name] = c
	n.fs.journal = append(n.fs.journal, op{kind: opMkdir, parent: n.e, name: name, e: c, perm: os.FileMode(mode & 0o777)})
	return n.child(ctx, c, out), 0
}

func (n *node) Read(ctx context.Context, _ gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return nil, errno
	}
	defer n.unlock()
	got, err := n.fs.readAt(n.e, dest, off)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

func (n *node) Write(ctx context.Context, _ gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return 0, errno
	}
	defer n.unlock()
	if err := n.fs.writeAt(n.e, data, off); err != nil {
		return 0, gofs.ToErrno(err)
	}
	return uint32(len(data)), 0
}

// Fsync serves fsync and fdatasync of files and directories: it commits the
// namespace journal, then, for a file, the file's data.
func (n *node) Fsync(ctx context.Context, _ gofs.FileHandle, flags uint32) syscall.Errno {
	if errno := n.lock(); errno != 0 {
		return errno
	}
	defer n.unlock()
	n.fs.stats.Syncs++
	err := n.fs.commit()
	if err == nil && !n.e.isDir() {
		err = n.fs.syncData(n.e)
	}
	if err != nil {
		return gofs.ToErrno(err)
	}
	return 0
}

func (n *node) Release(ctx context.Context, _ gofs.FileHandle) syscall.Errno {
	n.fs.mu.Lock() // also after the cut: it only counts
	defer n.fs.mu.Unlock()
	n.e.opens--
	if !n.fs.down {
		n.fs.dropIfGone(n.e)
	}
	return 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, false)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(name, true)
}

func (n *node) remove(name string, dir bool) syscall.Errno {
	if errno := n.lock(); errno != 0 {
		return errno
	}
	defer n.unlock()
	c, ok := n.e.children[name]
	switch {
	case !ok:
		return syscall.ENOENT
	case dir && !c.isDir():
		return syscall.ENOTDIR
	case !dir && c.isDir():
		return syscall.EISDIR
	case dir && len(c.children) > 0:
		return syscall.ENOTEMPTY
	}
	kind := opUnlink
	if dir {
		kind = opRmdir
	}
	n.fs.unlinkLive(c)
	n.fs.journal = append(n.fs.journal, op{kind: kind, parent: n.e, name: name, e: c})
	return 0
}

func (f *FS) unlinkLive(c *entry) {
	delete(c.parent.children, c.name)
	c.parent = nil
	c.ctime = time.Now()
	f.dropIfGone(c)
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if errno := n.lock(); errno != 0 {
		return errno
	}
	defer n.unlock()
	if flags&^uint32(unix.RENAME_NOREPLACE) != 0 {
		return syscall.ENOTSUP // RENAME_EXCHANGE, RENAME_WHITEOUT
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	c, ok := n.e.children[name]
	if !ok {
		return syscall.ENOENT
	}
	r := np.e.children[newName]
	switch {
	case r == c:
		return 0
	case r != nil && flags&unix.RENAME_NOREPLACE != 0:
		return syscall.EEXIST
	case r != nil && c.isDir() && !r.isDir():
		return syscall.ENOTDIR
	case r != nil && !c.isDir() && r.isDir():
		return syscall.EISDIR
	case r != nil && len(r.children) > 0:
		return syscall.ENOTEMPTY
	}
	for d := np.e; d != nil; d = d.parent {
		if d == c {
			return syscall.EINVAL // a directory into itself
		}
	}
	if r != nil {
		n.fs.unlinkLive(r)
	}
	delete(n.e.children, name)
	c.parent, c.name = np.e, newName
	c.ctime = time.Now()
	np.e.children[newName] = c
	n.fs.journal = append(n.fs.journal, op{kind: opRename, parent: n.e, name: name, e: c,
		newParent: np.e, newName: newName, replaced: r})
	return 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if errno := n.lock(); errno != 0 {
		return nil, errno
	}
	defer n.unlock()
	list := make([]fuse.DirEntry, 0, len(n.e.children))
	for _, name := range slices.Sorted(maps.Keys(n.e.children)) {
		c := n.e.children[name]
		list = append(list, fuse.DirEntry{Name: name, Mode: c.mode, Ino: c.ino})
	}
	return gofs.NewListDirStream(list), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fs.backing, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}
