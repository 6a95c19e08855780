package config

import (
	"net/url"
	"os"
	"strings"
	"time"
)

// GroupInstanceIDNone turns static group membership off.
const GroupInstanceIDNone = "none"

// minGroupSession is Kafka's default group.min.session.timeout.ms: a
// shorter session timeout makes every join fail. Clusters configured
// lower are rare; 6 s is also the floor Culex accepts.
const minGroupSession = 6 * time.Second

// maxGroupInstanceID is Kafka's limit on group.instance.id.
const maxGroupInstanceID = 249

// resolveGroupInstanceID fills GroupInstanceID when it was not given:
// the host name plus the data dir, or without one the first listener's
// address, so that two nodes on one host differ.
func (k *Kafka) resolveGroupInstanceID(dataDir string, ls []Listener) {
	if k.GroupInstanceIDSet || k.GroupInstanceID != "" {
		return
	}
	where := dataDir
	if where == "" && len(ls) > 0 {
		if u, err := url.Parse(ls[0].URL); err == nil {
			where = u.Host
		}
	}
	k.GroupInstanceID = DefaultGroupInstanceID(where)
}

// DefaultGroupInstanceID is the host name and where, with every character
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
