package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashDirEnv tells TestHelperProcess to run as the crash test's child, in
// the data dir it names.
const crashDirEnv = "CULEX_STORE_CRASH_DIR"

const (
	crashAppliers  = 8
	crashWindow    = 4    // applies in flight per applier
	crashKeys      = 2000 // acknowledged keys after which the parent kills the child
	crashRunFor    = 10 * time.Second
	crashChildLife = time.Minute // the child gives up on its own if never killed
)

// crashValue is the value the child writes under key, checked after reopen.
func crashValue(key string) []byte {
	return bytes.Repeat([]byte(key+";"), 200/(len(key)+1)+1)[:200]
}

// TestBoltCrashDurability kills a process that is writing to a Bolt store
// with SIGKILL and checks that every key whose done callback reported
// success survived.
func TestBoltCrashDurability(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	lines := make(chan string)
	go func() { // ends at EOF, which the child's death guarantees
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // a line cut short by the kill is not an acknowledgement
			}
			lines <- line
		}
	}()

	acked := make(map[string]bool)
	killed, late := false, false
	kill := func(why string) {
		if !killed {
			killed = true
			t.Logf("SIGKILL after %d acknowledged keys (%s)", len(acked), why)
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Errorf("kill child: %v", err)
			}
		}
	}
	runFor := time.NewTimer(crashRunFor)
	defer runFor.Stop()
	giveUp := time.NewTimer(crashRunFor + waitTimeout)
	defer giveUp.Stop()
read:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				break read
			}
			if key, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "ack "); ok {
				acked[key] = true
			}
			if len(acked) >= crashKeys || late && len(acked) > 0 {
				kill("enough keys")
			}
		case <-runFor.C:
			late = true // on a very slow disk, kill at the first ack
			if len(acked) > 0 {
				kill("time limit")
			}
		case <-giveUp.C:
			if !killed {
				t.Fatalf("child acknowledged nothing in %v\n%s", crashRunFor+waitTimeout, stderr.Bytes())
			}
			t.Fatalf("child's stdout still open %v after the kill", waitTimeout)
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before it was killed: %v\n%s", err, stderr.Bytes())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\n%s", err, stderr.Bytes())
	}
	if len(acked) == 0 {
		t.Fatalf("child acknowledged no key\n%s", stderr.Bytes())
	}

	b := openBolt(t, dir, BoltOptions{})
	stored := make(map[string]bool)
	err = b.Scan(Retained, "crash/", func(k string, v []byte) error {
		if !bytes.Equal(v, crashValue(k)) {
			return fmt.Errorf("key %s: value %q is corrupt", k, v)
		}
		stored[k] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for k := range acked {
		if !stored[k] {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged key %s lost in the crash", k)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged keys lost", lost, len(acked))
	}
	t.Logf("%d acknowledged keys survived; %d stored in all", len(acked), len(stored))
}

// TestHelperProcess is the crash test's child. It writes keys until killed
// and prints each one after its done callback returned nil.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestBoltCrashDurability")
	}
	os.Exit(crashChild(dir, os.Stdout))
}

// crashChild writes keys to the store in dir from several appliers and
// reports each acknowledged one to out. It returns an exit code only on
// failure or when crashChildLife runs out.
func crashChild(dir string, out io.Writer) int {
	b, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	failed := make(chan error, 1)
	for g := range crashAppliers {
		go func() { // runs until the process dies
			window := make(chan struct{}, crashWindow)
			for i := 0; ; i++ {
				window <- struct{}{}
				key := fmt.Sprintf("crash/%d/%08d", g, i)
				b.Apply([]Op{{Kind: Put, Bucket: Retained, Key: key, Value: crashValue(key)}}, func(err error) {
					if err == nil {
						// One small write: a pipe never splits it.
						_, err = io.WriteString(out, "ack "+key+"\n")
					}
					if err != nil {
						select {
						case failed <- err:
						default:
						}
					}
					<-window
				})
			}
		}()
	}
	select {
	case err := <-failed:
		fmt.Fprintln(os.Stderr, err)
		return 1
	case <-time.After(crashChildLife):
		return 2
	}
}
