// Package faultfs emulates a power loss under a program's data directory,
// for the fault suite and other tests (only tests import it).
//
// Mount serves, over FUSE, a mirror of a backing directory in which every
// write stays in the layer's memory until the program makes it durable with
// fsync or fdatasync. Reads see everything written; the backing directory
// holds only what was synced. Cut is the power loss: at one instant every
// later operation on the mount fails (EIO, or ENOTCONN once the connection
// is aborted), everything not yet synced is dropped, and the mount goes away.
// A later Mount of the same backing directory shows exactly what was synced
// before the cut. A SIGKILL alone is no such test: the kernel keeps a killed
// process's unsynced writes in its page cache and writes them out later, so
// a program that never fsyncs survives it. Close is an orderly unmount
// instead: it writes everything back.
//
// What a sync makes durable (by default roughly ext4 with data=ordered):
//
//   - File data, including the file's size (writes, truncates, growth): only
//     an fsync or fdatasync of that file makes them durable, all at once.
//     fsync and fdatasync are the same here. Nothing is written back on a
//     timer, so a program that relies on the kernel's periodic writeback
//     loses everything since its last sync.
//   - The namespace (create, mkdir, rename, unlink, rmdir) is one ordered
//     journal: each operation is applied to the mount at once and recorded.
//     Any fsync or fdatasync, of a file or of a directory, commits the whole
//     journal up to that moment, in order, as ext4's single jbd2 journal does.
//     So a new or renamed file is durable once its directory is fsynced, or
//     once any file is fsynced after it (ext4 behaves so; POSIX promises only
//     the directory fsync). A file's data is never committed by another
//     file's sync: a file written, not synced, and renamed over an old one is
//     empty after the cut once anything else was synced.
//   - With the POSIXDirSync option only a directory fsync commits the journal
//     (all of it, not only that directory's operations), which is what POSIX
//     promises: a file's fsync makes its data durable but not its new name
//     (the data waits in a staging directory of the backing directory, and is
//     dropped at the next Mount if its create was never committed).
//   - Permission bits are applied to the backing file at its next fsync;
//     times and owners are not emulated (the backing directory keeps its own).
//
// What is not emulated: ext4's own journal commits every few seconds and its
// writeback of other files' data at a commit, and its auto_da_alloc (the data
// of a file renamed over an existing one, or truncated to zero, is flushed
// with the rename): this layer loses more than default ext4 would (what it
// loses, ext4 with noauto_da_alloc or another file system may lose too). Torn or partial writes
// (the unsynced data of a file is dropped whole, never half a page of it); a
// disk that acknowledges a flush it did not do; hard links, symlinks, device
// nodes, xattrs and fallocate (they fail, with EPERM or ENOTSUP). flock and
// POSIX locks are the kernel's, local to the mount.
//
// Linux only: Mount needs /dev/fuse and root (it mounts directly, without
// fusermount, and aborts connections through fusectl, which it mounts on
// /sys/fs/fuse/connections if no one has). It fails, never skips, when
// either is missing. The process that mounts serves the file system, so it
// must not mmap files of its own mount (see Mount): run the programs under
// test in child processes.
//
// For the fault suite: each core's data directory is a faultfs mount of its
// own backing directory; the power loss of a node is its SIGKILL together
// with Cut of its mount, and its restart mounts the backing directory again
// and starts the node on it. A process in another mount namespace (`ip netns
// exec`, unshare) sees the mounts that existed when the namespace was made:
// mount before starting the node, and start the restarted node after the new
// Mount. Cut aborts the FUSE connection, so a copy of the mount in a
// namespace made earlier fails from then on rather than outliving the cut.
// With JetStream's sync_interval "always", nats-server keeps every message it
// acknowledged across a cut, in both modes
// (TestJetStreamSyncAlwaysKeepsAckedMessages); with its default interval of
// two minutes it loses them, stream and all
// (TestJetStreamDefaultSyncLosesAckedMessages). bbolt keeps every committed
// transaction and checks consistent (TestBoltCommittedTransactionsSurviveCut)
// in the default mode; it fsyncs no directory, so under POSIXDirSync a new
// database file needs its directory synced by its caller (internal/store
// does).
package faultfs
