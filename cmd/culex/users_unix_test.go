//go:build unix

package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/culexmq/culex/internal/auth"
)

// TestUsersRewriteKeepsOwnerAndMode: `culex users rm` run as root on a file
// that another user owns with mode 0640 leaves it owned by that user with
// mode 0640 (a broker running as that user can still read it). As another
// user, a rewrite that cannot keep the owner fails and changes nothing.
func TestUsersRewriteKeepsOwnerAndMode(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	for _, name := range []string{"dev-1", "dev-2"} {
		if _, err := runUsers(t, "s\n", "add", "-file", file, "-cost", "4", name); err != nil {
			t.Fatal(err)
		}
	}
	const uid, gid = 4321, 4322
	if os.Geteuid() != 0 {
		if err := os.Chmod(file, 0o640); err != nil {
			t.Fatal(err)
		}
		// Not root: the owner cannot be given away, so pretend with a file we
		// cannot chown: nothing to check but the mode.
		if _, err := runUsers(t, "", "rm", "-file", file, "dev-2"); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
		}
		t.Skip("not root: the owner part needs root (CI runs it as root in the container)")
	}
	if err := os.Chown(file, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := runUsers(t, "", "rm", "-file", file, "dev-2"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o640 {
		t.Errorf("after rm: owner %d:%d mode %v, want %d:%d 0640", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}
	u, err := auth.LoadUsers(file)
	if err != nil || u.Len() != 1 {
		t.Fatalf("after rm: %v users, err %v", u.Len(), err)
	}
}
