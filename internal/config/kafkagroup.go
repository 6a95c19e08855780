package config

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/atomicfile"
)

// GroupInstanceIDNone turns static group membership off.
const GroupInstanceIDNone = "none"

// minGroupSession is Kafka's default group.min.session.timeout.ms: a
// shorter session timeout makes every join fail. Clusters configured
// lower are rare; 6 s is also the floor Culex accepts.
const minGroupSession = 6 * time.Second

// maxGroupInstanceID is Kafka's limit on group.instance.id.
const maxGroupInstanceID = 249

// GroupInstanceIDFile is the file in data_dir (`culex bridge`: in
// kafka.spool.dir) that keeps the generated group instance id.
const GroupInstanceIDFile = "kafka-group-instance-id"

// ResolveGroupInstanceID fills GroupInstanceID when it was not given: the
// id stored in dir's GroupInstanceIDFile, generated at random and stored
// the first time, so that it survives restarts (whatever the host name)
// and differs between hosts. Without dir (a memory-only node) it stays
// empty: dynamic membership. It returns the id in effect ("" or "none":
// dynamic).
func (k *Kafka) ResolveGroupInstanceID(dir string) (string, error) {
	if k.GroupInstanceIDSet || k.GroupInstanceID != "" || dir == "" {
		return k.GroupInstanceID, nil
	}
	path := filepath.Join(dir, GroupInstanceIDFile)
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" || len(id) > maxGroupInstanceID || strings.IndexFunc(id, func(r rune) bool { return !validInstanceRune(r) }) >= 0 {
			return "", fmt.Errorf("%s: %q is not a group instance id; delete the file for a new one", path, id)
		}
		k.GroupInstanceID = id
		return id, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	id := "culex-" + rand.Text()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	k.GroupInstanceID = id
	return id, nil
}

// DefaultGroupInstanceID is the host name and where (`culex bridge`
// without a spool dir: its source.client_id), with every character
// Kafka refuses in a group.instance.id replaced by '-'.
func DefaultGroupInstanceID(where string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "culex"
	}
	id := host
	if where = strings.Trim(where, "/"); where != "" {
		id += "-" + where
	}
	id = strings.Map(func(r rune) rune {
		if validInstanceRune(r) {
			return r
		}
		return '-'
	}, id)
	if len(id) > maxGroupInstanceID {
		id = id[len(id)-maxGroupInstanceID:]
	}
	return id
}

func validInstanceRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// validateGroup checks the consumer group keys.
func (k *Kafka) validateGroup(bad func(key, format string, args ...any)) {
	if t := k.GroupSessionTimeout; t < minGroupSession || t > 30*time.Minute {
		bad("kafka.group_session_timeout", "%v is outside 6s..30m (below 6s, Kafka's default group.min.session.timeout.ms, every join of the group fails)", t)
	}
	id := k.GroupInstanceID
	if len(id) > maxGroupInstanceID {
		bad("kafka.group_instance_id", "%d characters, over Kafka's %d", len(id), maxGroupInstanceID)
	}
	if k.GroupInstanceIDSet && id == "" {
		bad("kafka.group_instance_id", "empty; leave it out for the default or write %q for dynamic membership", GroupInstanceIDNone)
	}
	if strings.IndexFunc(id, func(r rune) bool { return !validInstanceRune(r) }) >= 0 {
		bad("kafka.group_instance_id", "%q: Kafka allows only letters, digits, '.', '_' and '-'", id)
	}
}
