package main

import (
	"bytes"
	"os"
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
		{"x\n", []string{"add", "-file", file, "#dev"}, true},   // a comment line
		{"x\n", []string{"add", "-file", file, " dev"}, true},   // trimmed
		{"x\n", []string{"add", "-file", file, "a\nb"}, true},   // a second line
		{"x\n", []string{"add", "-file", file, "a\tb"}, true},   // a control character
		{"x\n", []string{"add", "-file", file, "a\xffb"}, true}, // not UTF-8
		{"", []string{"list"}, true},                            // no file
		{"", []string{"-h"}, false},                             // usage, whatever the file
		{"", []string{"frob"}, true},                            // named before the file is missing
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

// TestUsersAddRefusesNamesTheFileCannotHold: the error says why.
func TestUsersAddRefusesNamesTheFileCannotHold(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	for name, why := range map[string]string{"#dev": "comment", "a:b": "':'", "dev ": "white space", "a\nb": "control"} {
		_, err := runUsers(t, "x\n", "add", "-file", file, "-cost", "4", name)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("add %q: %v, want an error saying %s", name, err, why)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a refused add wrote the file: %v", err)
	}
}
