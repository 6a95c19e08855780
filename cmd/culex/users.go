package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/culexmq/culex/internal/auth"
	"github.com/culexmq/culex/internal/cliflag"
	"golang.org/x/term"
)

const usersUsage = `Usage:
  culex users add    [flags] NAME   add a user (the password is read from stdin or a prompt)
  culex users passwd [flags] NAME   change a user's password
  culex users rm     [flags] NAME   remove a user
  culex users list   [flags]        list the users

A running broker picks the change up without a restart (auth.watch_interval,
or SIGHUP); clients of a removed user, or one whose password changed, are
disconnected. Flags:
`

// users manages the users file (docs/security.md).
func users(args []string) error {
	return usersCmd(args, os.Stdin, os.Stdout, os.Stderr)
}

func usersCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("culex users", flag.ContinueOnError)
	fs.SetOutput(stderr) // for the usage printed below; cliflag.Parse keeps its errors to one line
	file := fs.String("file", os.Getenv("CULEX_AUTH_USERS_FILE"), "users `file` (default $CULEX_AUTH_USERS_FILE)")
	super := fs.Bool("superuser", false, "add/passwd: the user bypasses ACLs")
	scram := fs.Bool("scram", false, "add/passwd: also store SCRAM-SHA-256 credentials for MQTT 5 enhanced authentication")
	argon := fs.Bool("argon2id", false, "add/passwd: hash with argon2id instead of bcrypt")
	cost := fs.Int("cost", 10, "add/passwd: bcrypt `cost` (each +1 doubles login CPU time)")
	fs.Usage = func() { fmt.Fprint(stderr, usersUsage); fs.PrintDefaults() }
	if len(args) == 0 {
		fs.Usage()
		return errors.New("users: missing command")
	}
	cmd := args[0]
	switch cmd {
	case "add", "passwd", "rm", "list":
	case "-h", "-help", "--help", "help":
		fs.Usage()
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("users: unknown command %q", cmd)
	}
	if err := cliflag.Parse(fs, args[1:], stderr, func() { fmt.Fprint(stderr, usersUsage); fs.PrintDefaults() }); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("users: no users file: pass -file or set CULEX_AUTH_USERS_FILE")
	}
	u, err := auth.LoadUsers(*file)
	if err != nil {
		return err
	}
	if cmd == "list" {
		return listUsers(u, stdout)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("users %s: want exactly one NAME", cmd)
	}
	name := fs.Arg(0)
	old, exists := u.Get(name)
	switch cmd {
	case "add", "passwd":
		if cmd == "add" && exists {
			return fmt.Errorf("users add: %q exists (use passwd)", name)
		}
		if cmd == "passwd" && !exists {
			return fmt.Errorf("users passwd: no user %q", name)
		}
		pw, err := readPassword(stdin, stderr)
		if err != nil {
			return err
		}
		x := &auth.User{Name: name, Superuser: *super}
		if exists {
			x.Superuser = old.Superuser || *super
		}
		if *argon {
			x.Hash, err = auth.HashArgon2id(pw)
		} else {
			x.Hash, err = auth.HashBcrypt(pw, *cost)
		}
		if err != nil {
			return fmt.Errorf("users: hash: %w", err)
		}
		if *scram || exists && old.SCRAM != "" {
			if x.SCRAM, err = auth.NewSCRAMCreds(pw); err != nil {
				return err
			}
		}
		if err := u.Put(x); err != nil {
			return fmt.Errorf("users: %w", err)
		}
	case "rm":
		if !u.Delete(name) {
			return fmt.Errorf("users rm: no user %q", name)
		}
	}
	return auth.SaveUsers(*file, u)
}

func listUsers(u *auth.Users, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHASH\tSUPERUSER\tSCRAM")
	for _, x := range u.List() {
		kind := "bcrypt"
		if strings.HasPrefix(x.Hash, "$argon2id$") {
			kind = "argon2id"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\n", x.Name, kind, x.Superuser, x.SCRAM != "")
	}
	return tw.Flush()
}

// readPassword prompts twice without echo on a terminal, and otherwise
// reads one line from stdin (for scripts: `echo secret | culex users add`).
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprint(stderr, "\nAgain: ")
		b, err2 := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err := errors.Join(err, err2); err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("users: passwords differ")
		}
		return checkPassword(string(a))
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return checkPassword(strings.TrimRight(line, "\r\n"))
}

func checkPassword(pw string) (string, error) {
	switch {
	case pw == "":
		return "", errors.New("users: empty password")
	case len(pw) > 72:
		return "", errors.New("users: password longer than 72 bytes (bcrypt's limit)")
	}
	return pw, nil
}
