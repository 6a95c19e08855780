package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// User is one line of the users file:
//
//	name:hash [superuser] [scram=SCRAM-SHA-256$iter:salt$stored:server]
//
// The hash is bcrypt ($2a$, $2b$, $2y$) or argon2id in PHC form
// ($argon2id$v=19$m=...,t=...,p=...$salt$key). A name holds no ':' and no
// line break; the rest of the line is split on white space.
type User struct {
	Name      string
	Hash      string
	Superuser bool
	// SCRAM holds SCRAM-SHA-256 credentials (RFC 5803 form), if any.
	SCRAM string
}

// Users is a parsed users file. It is immutable once shared: a change
// builds a new one.
type Users struct {
	byName map[string]*User
	order  []string
}

// NewUsers returns an empty users set.
func NewUsers() *Users { return &Users{byName: map[string]*User{}} }

// Get returns the user named name.
func (u *Users) Get(name string) (*User, bool) {
	x, ok := u.byName[name]
	return x, ok
}

// List returns the users in file order.
func (u *Users) List() []*User {
	out := make([]*User, 0, len(u.order))
	for _, n := range u.order {
		out = append(out, u.byName[n])
	}
	return out
}

// first returns the first user in file order, if any.
func (u *Users) first() (*User, bool) {
	if len(u.order) == 0 {
		return nil, false
	}
	return u.byName[u.order[0]], true
}

// Len is the number of users.
func (u *Users) Len() int { return len(u.order) }

// Put adds or replaces a user, keeping its place in the file.
func (u *Users) Put(x *User) error {
	if err := validName(x.Name); err != nil {
		return err
	}
	u.put(x)
	return nil
}

func (u *Users) put(x *User) {
	if _, ok := u.byName[x.Name]; !ok {
		u.order = append(u.order, x.Name)
	}
	u.byName[x.Name] = x
}

// Delete removes a user and reports whether it existed.
func (u *Users) Delete(name string) bool {
	if _, ok := u.byName[name]; !ok {
		return false
	}
	delete(u.byName, name)
	u.order = slices.DeleteFunc(u.order, func(n string) bool { return n == name })
	return true
}

// maxNameLen is the longest MQTT username (a UTF-8 string field).
const maxNameLen = 65535

// validName refuses names the users file cannot hold or no client can
// present: the file splits a line at the first ':', trims white space
// around it and skips lines starting with '#'; MQTT usernames are UTF-8
// without NUL and at most 65,535 bytes.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("user name is empty")
	case strings.ContainsRune(name, ':'):
		return fmt.Errorf("user name %q holds ':', which ends a name in the users file", name)
	case name[0] == '#':
		return fmt.Errorf("user name %q starts with '#', which makes its line a comment in the users file", name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("user name %q starts or ends with white space, which the users file trims", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("user name %q is not valid UTF-8, which MQTT usernames must be", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("user name %q holds a control character (line break, tab, NUL...)", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("user name of %d bytes is longer than an MQTT username can be (%d)", len(name), maxNameLen)
	}
	return nil
}

// ParseUsers reads a users file. Blank lines and lines starting with '#'
// are ignored.
func ParseUsers(r io.Reader) (*Users, error) {
	u := NewUsers()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("users line %d: want name:hash", n)
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("users line %d: user %q has no hash", n, name)
		}
		x := &User{Name: name, Hash: f[0]}
		if !strings.HasPrefix(x.Hash, "$2") && !strings.HasPrefix(x.Hash, "$argon2id$") {
			return nil, fmt.Errorf("users line %d: user %q: unsupported hash (want bcrypt or argon2id)", n, name)
		}
		for _, attr := range f[1:] {
			switch {
			case attr == "superuser":
				x.Superuser = true
			case strings.HasPrefix(attr, "scram="):
				x.SCRAM = strings.TrimPrefix(attr, "scram=")
				if _, err := parseSCRAMCreds(x.SCRAM); err != nil {
					return nil, fmt.Errorf("users line %d: user %q: %w", n, name, err)
				}
			default:
				return nil, fmt.Errorf("users line %d: user %q: unknown attribute %q", n, name, attr)
			}
		}
		if _, dup := u.byName[name]; dup {
			return nil, fmt.Errorf("users line %d: user %q listed twice", n, name)
		}
		// Only what the line itself can get wrong: a name that a hand edit
		// left with control characters or bad UTF-8 still loads (it can
		// never log in), rather than failing the whole file.
		if name == "" || strings.TrimSpace(name) != name {
			return nil, fmt.Errorf("users line %d: user %q: the name is empty or ends with white space", n, name)
		}
		u.put(x)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return u, nil
}

// LoadUsers reads the users file at path; a missing file is an empty set.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return NewUsers(), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u, err := ParseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}

// WriteTo writes the users file form of u.
func (u *Users) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	b.WriteString("# Culex users file: name:hash [superuser] [scram=...]; managed by `culex users`.\n")
	for _, x := range u.List() {
		b.WriteString(x.Name + ":" + x.Hash)
		if x.Superuser {
			b.WriteString(" superuser")
		}
		if x.SCRAM != "" {
			b.WriteString(" scram=" + x.SCRAM)
		}
		b.WriteByte('\n')
	}
	return b.WriteTo(w)
}

// SaveUsers writes u to path atomically: a temporary file in the same
// directory, fsynced, then renamed over path. A running broker watching
// the file sees either the old or the new file, never half of one. The
// new file keeps the owner, group and mode of the one it replaces (a new
// file is 0600, owned by the caller), so that a broker running as another
// user can still read it; if the owner cannot be kept (not root, not the
// owner), nothing is written and the error says so. A symbolic link is
// followed: the file it names is replaced, the link stays.
func SaveUsers(path string, u *Users) (err error) {
	if p, lerr := filepath.EvalSymlinks(path); lerr == nil {
		path = p
	}
	mode, uid, gid, keepOwner := os.FileMode(0o600), 0, 0, false
	if fi, serr := os.Stat(path); serr == nil {
		mode = fi.Mode().Perm()
		uid, gid, keepOwner = fileOwner(fi)
	} else if !errors.Is(serr, os.ErrNotExist) {
		return serr
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if keepOwner && (uid != os.Geteuid() || gid != os.Getegid()) {
		if err = tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("%s: keeping its owner %d:%d: %w (run as root or as the file's owner)", path, uid, gid, err)
		}
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if _, err = u.WriteTo(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// HashBcrypt hashes a password with bcrypt at cost (0: bcrypt's default).
func HashBcrypt(password string, cost int) (string, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	return string(h), err
}

// Argon2id parameters for new hashes (RFC 9106's second recommendation,
// with less memory so that a connect storm cannot exhaust it). Variables
// so that tests can make them cheap.
var (
	argonTime    uint32 = 3
	argonMemory  uint32 = 64 << 10 // KiB
	argonThreads uint8  = 2
)

const argonKeyLen = 32

// HashArgon2id hashes a password with argon2id in PHC string form.
func HashArgon2id(password string) (string, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime,
		argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches hash (bcrypt or argon2id).
func VerifyPassword(hash string, password []byte) (bool, error) {
	if strings.HasPrefix(hash, "$argon2id$") {
		return verifyArgon2id(hash, password)
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), password)
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, nil
	}
	return err == nil, err
}

func verifyArgon2id(hash string, password []byte) (bool, error) {
	// $argon2id$v=19$m=65536,t=3,p=2$salt$key
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errors.New("argon2id hash: bad form or version")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("argon2id hash parameters: %w", err)
	}
	if m > 1<<20 || t > 16 || p == 0 {
		return false, errors.New("argon2id hash: parameters out of range")
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(f[4])
	key, err2 := enc.DecodeString(f[5])
	if err := errors.Join(err1, err2); err != nil || len(key) == 0 || len(key) > 128 {
		return false, fmt.Errorf("argon2id hash encoding: %v", err)
	}
	got := argon2.IDKey(password, salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}
