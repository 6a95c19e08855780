// Package faultfs emulates a power loss under a program's data directory,
// for the fault suite and other tests (only tests import it).
//
// Mount serves, over FUSE, a mirror of a backing directory in which every
// write stays in the layer's memory until the program makes it durable with
// fsync or fdatasync. Reads see everything written; the backing directory
// holds only what was synced. Cut is the power loss: at one instant every
// later operation on the mount fails with EIO, everything not yet synced is
// dropped, and the mount goes away. A later Mount of the same backing
// directory shows exactly what was synced before the cut. A SIGKILL alone is
// no such test: the kernel keeps a killed process's unsynced writes in its
// page cache and writes them out later, so a program that never fsyncs
// survives it.
//
// What a sync makes durable (the model, roughly ext4 with data=ordered):
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
//     file's sync.
//   - Permission bits are applied to the backing file at its next fsync;
//     times and owners are not emulated (the backing directory keeps its own).
//
// What is not emulated: ext4's own commits every few seconds and its flushing
// of other files' data at a commit (this layer loses more than ext4 would,
// never less than POSIX allows, except for the journal rule above); torn or
// partial writes (unsynced data of a file is dropped whole, never half a page
// of it); a lying disk cache; hard links, symlinks, device nodes, xattrs and
// fallocate (they fail with ENOTSUP). flock and POSIX locks are the kernel's,
// local to the mount. Shared writable mmap works but is synced only by fsync
// (msync goes through the kernel to fsync).
//
// Linux only: Mount needs /dev/fuse and root (it mounts directly, without
// fusermount). It fails, never skips, when either is missing.
//
// For the fault suite: each core's data directory is a faultfs mount of its
// own backing directory; "power loss" of a node is its SIGKILL together with
// Cut of its mount, and the restart mounts the backing directory again.
// Messages a node acknowledged after an fsync (JetStream sync_interval
// "always") survive this; with JetStream's default sync interval they do not,
// which TestJetStreamDefaultSyncLosesAckedMessages shows on a real
// nats-server.
package faultfs
