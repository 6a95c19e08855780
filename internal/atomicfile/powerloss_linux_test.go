package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/culexmq/culex/internal/faultfs"
)

// TestWriteFileSurvivesPowerLoss replaces a file on a layer that drops
// every write not yet fsynced at the cut (internal/faultfs, in its POSIX
// mode: only a directory fsync makes a rename durable). The new content is
// there after the cut. The write-and-rename without fsyncs that WriteFile
// replaced leaves no file: the control, showing the test can fail.
func TestWriteFileSurvivesPowerLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(path string, data []byte) error
		want  string // after the cut; "" for no file
	}{
		{"WriteFile", func(p string, d []byte) error { return WriteFile(p, d, 0o600) }, "new"},
		{"rename without fsync", func(p string, d []byte) error {
			if err := os.WriteFile(p+".tmp", d, 0o600); err != nil {
				return err
			}
			return os.Rename(p+".tmp", p)
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backing, mnt := t.TempDir(), t.TempDir()
			fs, err := faultfs.Mount(t, backing, mnt, faultfs.POSIXDirSync())
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(mnt, "bans.json")
			if err := tc.write(path, []byte("new")); err != nil {
				t.Fatal(err)
			}
			if err := fs.Cut(); err != nil {
				t.Fatal(err)
			}
			fs, err = faultfs.Mount(t, backing, mnt, faultfs.POSIXDirSync())
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			got, err := os.ReadFile(path)
			switch {
			case tc.want == "" && !os.IsNotExist(err):
				t.Fatalf("after the cut: %q, %v; want no file", got, err)
			case tc.want != "" && (err != nil || string(got) != tc.want):
				t.Fatalf("after the cut: %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
