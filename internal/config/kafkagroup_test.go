package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The default group instance id is generated once, stored in data_dir and
// read back by every later start (two config loads here), whatever the
// host name; another data dir gets another id; without a data dir there is
// none (dynamic membership); a given id, or none, is kept.
func TestKafkaGroupInstanceIDDefault(t *testing.T) {
	resolve := func(args ...string) string {
		t.Helper()
		c, err := Parse("serve", args, nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.Kafka.ResolveGroupInstanceID(c.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		if id != c.Kafka.GroupInstanceID {
			t.Fatalf("%v: returned %q, config holds %q", args, id, c.Kafka.GroupInstanceID)
		}
		return id
	}
	dir := filepath.Join(t.TempDir(), "data")
	first := resolve("--data-dir", dir)
	if !strings.HasPrefix(first, "culex-") || len(first) < 20 {
		t.Fatalf("generated id %q", first)
	}
	stored, err := os.ReadFile(filepath.Join(dir, GroupInstanceIDFile))
	if err != nil || strings.TrimSpace(string(stored)) != first {
		t.Fatalf("stored %q (%v), want %q", stored, err, first)
	}
	if again := resolve("--data-dir", dir); again != first {
		t.Errorf("second start: %q, want the stored %q", again, first)
	}
	if other := resolve("--data-dir", t.TempDir()); other == first || other == "" {
		t.Errorf("another data dir: %q (first %q)", other, first)
	}
	if id := resolve("--data-dir", "", "--listen", "tcp://127.0.0.1:1884"); id != "" {
		t.Errorf("without data_dir: %q, want none (dynamic membership)", id)
	}
	for _, given := range []string{"node-0", GroupInstanceIDNone} {
		d := t.TempDir()
		if id := resolve("--data-dir", d, "--kafka.group-instance-id", given); id != given {
			t.Errorf("given %q: %q", given, id)
		}
		if _, err := os.Stat(filepath.Join(d, GroupInstanceIDFile)); err == nil {
			t.Errorf("given %q: an id file was written", given)
		}
	}
}

// A damaged id file is an error naming the file, not a silent new id.
func TestKafkaGroupInstanceIDBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, GroupInstanceIDFile), []byte("a/b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var k Kafka
	if _, err := k.ResolveGroupInstanceID(dir); err == nil || !strings.Contains(err.Error(), GroupInstanceIDFile) {
		t.Fatalf("err %v", err)
	}
}
