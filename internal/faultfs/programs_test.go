//go:build linux

package faultfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// bbolt reads its file through mmap. A page fault on a FUSE file blocks its
// thread outside any system call, so a stop-the-world of the Go runtime
// would wait for it while the goroutines that serve the fault are stopped:
// the database runs in a child process, as Culex runs in the fault suite.

// TestMain runs the bbolt child when FAULTFS_BOLT names a database.
func TestMain(m *testing.M) {
	if path := os.Getenv("FAULTFS_BOLT"); path != "" {
		if err := boltChild(path, os.Getenv("FAULTFS_BOLT_MODE")); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const boltTxs = 300

func boltValue(i int) []byte { return fmt.Appendf(nil, "%d-%0900d", i, i) } // the file outgrows its first mmap

// boltChild, with mode "commit" or "nosync", commits boltTxs transactions
// (key i -> boltValue(i)), printing "committed" after the last, and waits
// with the database open to be killed. With mode "check" it checks the
// database and prints how many of the keys it holds.
func boltChild(path, mode string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: mode == "nosync"})
	if err != nil {
		return err
	}
	if mode == "check" {
		defer db.Close()
		return db.View(func(tx *bolt.Tx) error {
			var errs []error
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("inconsistent: %w", errors.Join(errs...))
			}
			found := 0
			if b := tx.Bucket([]byte("b")); b != nil {
				for i := range boltTxs {
					if v := b.Get([]byte(strconv.Itoa(i))); v != nil {
						if !bytes.Equal(v, boltValue(i)) {
							return fmt.Errorf("key %d: wrong value %.20q", i, v)
						}
						found++
					}
				}
			}
			fmt.Println("found", found)
			return nil
		})
	}
	for i := range boltTxs {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put([]byte(strconv.Itoa(i)), boltValue(i))
		})
		if err != nil {
			return fmt.Errorf("commit %d: %w", i, err)
		}
	}
	fmt.Println("committed")
	_, err = io.Copy(io.Discard, os.Stdin) // until killed
	return err
}

// runBolt runs the bbolt child on the database at path.
func runBolt(t *testing.T, path, mode string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "FAULTFS_BOLT="+path, "FAULTFS_BOLT_MODE="+mode)
	cmd.Stderr = os.Stderr
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, bufio.NewScanner(out)
}

// boltCommittedThenCut commits boltTxs transactions in a child, cuts the
// mount while the child still has the database open, kills the child, and
// returns how many transactions a check after the remount finds.
func boltCommittedThenCut(t *testing.T, mode string) (found int, st Stats) {
	f := mount(t, t.TempDir(), t.TempDir())
	path := filepath.Join(f.Mountpoint(), "state.db")
	cmd, out := runBolt(t, path, mode)
	if !out.Scan() || out.Text() != "committed" {
		t.Fatalf("bbolt child: %q %v", out.Text(), out.Err())
	}
	if err := f.Cut(); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	mount(t, f.Backing(), f.Mountpoint())

	_, out = runBolt(t, path, "check")
	if !out.Scan() {
		t.Fatalf("bbolt check: no output: %v", out.Err())
	}
	if _, err := fmt.Sscanf(out.Text(), "found %d", &found); err != nil {
		t.Fatalf("bbolt check: %q", out.Text())
	}
	return found, f.Stats()
}

// TestBoltCommittedTransactionsSurviveCut: bbolt (pwrite, fdatasync, mmap
// reads, flock) on the mount keeps every committed transaction across a cut
// taken while it has the database open, and the file checks consistent.
func TestBoltCommittedTransactionsSurviveCut(t *testing.T) {
	if found, st := boltCommittedThenCut(t, "commit"); found != boltTxs {
		t.Fatalf("%d of %d committed transactions after the cut (layer stats %+v)", found, boltTxs, st)
	}
}

// TestBoltNoSyncLosesTransactionsAtCut is a proof the layer can fail a test:
// with NoSync, bbolt's commits never reach the backing directory.
func TestBoltNoSyncLosesTransactionsAtCut(t *testing.T) {
	found, st := boltCommittedThenCut(t, "nosync")
	if found == boltTxs || st.DiscardedBytes == 0 {
		t.Fatalf("%d of %d transactions survived without a sync (layer stats %+v)", found, boltTxs, st)
	}
}

// startNATS starts an embedded nats-server with JetStream stored in dir.
func startNATS(t *testing.T, dir string, syncAlways bool) (*server.Server, jetstream.JetStream) {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		SyncAlways: syncAlways, NoLog: true, NoSigs: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return s, js
}

// publishAcked creates stream S and publishes n messages, returning the
// stream sequence of each acknowledged one.
func publishAcked(t *testing.T, js jetstream.JetStream, n int) map[uint64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"},
		Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{}
	for i := range n {
		body := fmt.Sprintf("m-%d", i)
		ack, err := js.Publish(ctx, "s.x", []byte(body))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		acked[ack.Sequence] = body
	}
	return acked
}

// lostAfterCut cuts the mount under a running nats-server, restarts the
// server on the remounted directory, and returns how many acknowledged
// messages are missing or wrong.
func lostAfterCut(t *testing.T, f *FS, s *server.Server, acked map[uint64]string, syncAlways bool, opts ...Option) int {
	t.Helper()
	if err := f.Cut(); err != nil {
		t.Fatal(err)
	}
	if _, err := Mount(t, f.Backing(), f.Mountpoint(), opts...); err != nil {
		t.Fatal(err)
	}
	s.Shutdown() // after the power went: its last writes fail
	s.WaitForShutdown()
	_, js := startNATS(t, filepath.Join(f.Mountpoint(), "js"), syncAlways)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "S")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return len(acked)
	}
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for seq, body := range acked {
		m, err := st.GetMsg(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			lost++
		case err != nil:
			t.Fatalf("get %d: %v", seq, err)
		case string(m.Data) != body:
			t.Errorf("seq %d: %q, want %q", seq, m.Data, body)
			lost++
		}
	}
	return lost
}

// TestJetStreamSyncAlwaysKeepsAckedMessages: a real nats-server with
// sync_interval always on the mount keeps every message it acknowledged
// across a cut, also when only directory fsyncs commit names (it fsyncs the
// directories of the files it creates).
func TestJetStreamSyncAlwaysKeepsAckedMessages(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []Option
	}{{"ext4", nil}, {"posix", []Option{POSIXDirSync()}}} {
		t.Run(mode.name, func(t *testing.T) {
			f, err := Mount(t, t.TempDir(), t.TempDir(), mode.opts...)
			if err != nil {
				t.Fatal(err)
			}
			s, js := startNATS(t, filepath.Join(f.Mountpoint(), "js"), true)
			acked := publishAcked(t, js, 200)
			if lost := lostAfterCut(t, f, s, acked, true, mode.opts...); lost != 0 {
				t.Fatalf("%d of %d acknowledged messages lost with sync always (layer stats %+v)", lost, len(acked), f.Stats())
			}
		})
	}
}

// TestJetStreamDefaultSyncLosesAckedMessages is the proof the layer makes
// a test fail: with JetStream's default sync interval (two minutes), the
// messages acknowledged before the cut are gone after it.
func TestJetStreamDefaultSyncLosesAckedMessages(t *testing.T) {
	f := mount(t, t.TempDir(), t.TempDir())
	s, js := startNATS(t, filepath.Join(f.Mountpoint(), "js"), false)
	acked := publishAcked(t, js, 200)
	lost := lostAfterCut(t, f, s, acked, false)
	t.Logf("%d of %d acknowledged messages lost with the default sync; layer stats %+v", lost, len(acked), f.Stats())
	if lost == 0 {
		t.Fatal("no acknowledged message lost with the default sync interval: the layer does not discard unsynced data")
	}
}
