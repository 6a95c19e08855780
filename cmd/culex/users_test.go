package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/auth"
)

func runUsers(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := usersCmd(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), err
}

func TestUsersCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	steps := []struct {
		stdin string
		args  []string
		fails bool
	}{
		{"s1\n", []string{"add", "-file", file, "-cost", "4", "dev-1"}, false},
		{"s2\n", []string{"add", "-file", file, "-cost", "4", "-superuser", "-scram", "root"}, false},
		{"s3\n", []string{"add", "-file", file, "-argon2id", "dev-2"}, false},
		{"s1\n", []string{"add", "-file", file, "dev-1"}, true}, // exists
		{"\n", []string{"add", "-file", file, "dev-3"}, true},   // empty password
		{"s9\n", []string{"passwd", "-file", file, "-cost", "4", "dev-1"}, false},
		{"s9\n", []string{"passwd", "-file", file, "nobody"}, true},
		{"", []string{"rm", "-file", file, "dev-2"}, false},
		{"", []string{"rm", "-file", file, "dev-2"}, true},
		{"", []string{"frob", "-file", file}, true},
		{"x\n", []string{"add", "-file", file, "a:b"}, true},
		{"", []string{"list"}, true}, // no file
	}
	for _, s := range steps {
		if _, err := runUsers(t, s.stdin, s.args...); (err != nil) != s.fails {
			t.Fatalf("users %v: err %v, want failure %v", s.args, err, s.fails)
		}
	}
	out, err := runUsers(t, "", "list", "-file", file)
	if err != nil {
		t.Fatal(err)
	}
	want := "NAME   HASH    SUPERUSER  SCRAM\ndev-1  bcrypt  false      false\nroot   bcrypt  true       true\n"
	if out != want {
		t.Errorf("list:\n%s\nwant:\n%s", out, want)
	}
	u, err := auth.LoadUsers(file)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := u.Get("dev-1")
	if ok, _ := auth.VerifyPassword(x.Hash, []byte("s9")); !ok {
		t.Error("passwd did not take")
	}
}
