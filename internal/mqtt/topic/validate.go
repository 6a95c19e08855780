package topic

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/culexmq/culex/internal/mqtt/packet"
)

// MaxLen is the longest topic name or filter in bytes: both are UTF-8
// encoded strings with a two-byte length [MQTT-4.7.3-3].
const MaxLen = 65535

// sharePrefix starts a shared subscription's filter [MQTT-4.8.2].
const sharePrefix = "$share/"

// Errors are built once so that rejecting a hostile client costs no
// allocation; each matches its packet.Code with errors.Is.
var (
	errNameEmpty    = fmt.Errorf("%w: empty", packet.ErrTopicNameInvalid)
	errNameLong     = fmt.Errorf("%w: longer than 65535 bytes", packet.ErrTopicNameInvalid)
	errNameNUL      = fmt.Errorf("%w: contains U+0000", packet.ErrTopicNameInvalid)
	errNameUTF8     = fmt.Errorf("%w: not well-formed UTF-8", packet.ErrTopicNameInvalid)
	errNameWildcard = fmt.Errorf("%w: contains a wildcard", packet.ErrTopicNameInvalid)
	errNameLevels   = fmt.Errorf("%w: too many levels", packet.ErrTopicNameInvalid)

	errFilterEmpty      = fmt.Errorf("%w: empty", packet.ErrTopicFilterInvalid)
	errFilterLong       = fmt.Errorf("%w: longer than 65535 bytes", packet.ErrTopicFilterInvalid)
	errFilterNUL        = fmt.Errorf("%w: contains U+0000", packet.ErrTopicFilterInvalid)
	errFilterUTF8       = fmt.Errorf("%w: not well-formed UTF-8", packet.ErrTopicFilterInvalid)
	errFilterHash       = fmt.Errorf("%w: '#' not alone in the last level", packet.ErrTopicFilterInvalid)
	errFilterPlus       = fmt.Errorf("%w: '+' not alone in its level", packet.ErrTopicFilterInvalid)
	errFilterLevels     = fmt.Errorf("%w: too many levels", packet.ErrTopicFilterInvalid)
	errShareGroup       = fmt.Errorf("%w: empty share name or share name with '+' or '#'", packet.ErrTopicFilterInvalid)
	errShareNoFilter    = fmt.Errorf("%w: share name not followed by '/' and a filter", packet.ErrTopicFilterInvalid)
	errShareInnerFilter = fmt.Errorf("%w: shared subscription filter", packet.ErrTopicFilterInvalid)
)

// special marks the bytes the validators look at: separators, wildcards,
// NUL and the start of multi-byte UTF-8. The rest are skipped with one load.
var special = func() (t [256]bool) {
	for _, c := range []byte{'/', '+', '#', 0} {
		t[c] = true
	}
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return t
}()

// ValidName reports whether name may be published to. maxLevels > 0 bounds
// the number of levels ("a/b" has two); 0 means no bound. The error wraps
// packet.ErrTopicNameInvalid.
func ValidName(name string, maxLevels int) error {
	switch {
	case name == "":
		return errNameEmpty // [MQTT-4.7.3-1]
	case len(name) > MaxLen:
		return errNameLong // [MQTT-4.7.3-3]
	}
	levels := 1
	ascii := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !special[c] {
			continue
		}
		switch {
		case c == '/':
			levels++
		case c == '+' || c == '#':
			return errNameWildcard // [MQTT-4.7.1-1], [MQTT-3.3.2-2]
		case c == 0:
			return errNameNUL // [MQTT-4.7.3-2]
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(name) {
		return errNameUTF8 // [MQTT-1.5.4-1]
	}
	if maxLevels > 0 && levels > maxLevels {
		return errNameLevels
	}
	return nil
}

// ValidFilter reports whether filter may be subscribed to. maxLevels > 0
// bounds the number of levels; 0 means no bound. A shared filter
// ("$share/g/a/+") is checked only as a plain filter here: use ParseShared
// for the rules about its share name. The error wraps
// packet.ErrTopicFilterInvalid.
func ValidFilter(filter string, maxLevels int) error {
	switch {
	case filter == "":
		return errFilterEmpty // [MQTT-4.7.3-1]
	case len(filter) > MaxLen:
		return errFilterLong // [MQTT-4.7.3-3]
	}
	levels := 1
	ascii := true
	for i := 0; i < len(filter); i++ {
		c := filter[i]
		if !special[c] {
			continue
		}
		switch {
		case c == '/':
			levels++
		case c == '#':
			// Alone in its level and the last character [MQTT-4.7.1-2].
			if i != len(filter)-1 || (i > 0 && filter[i-1] != '/') {
				return errFilterHash
			}
		case c == '+':
			// Alone in its level [MQTT-4.7.1-3].
			if (i > 0 && filter[i-1] != '/') || (i < len(filter)-1 && filter[i+1] != '/') {
				return errFilterPlus
			}
		case c == 0:
			return errFilterNUL // [MQTT-4.7.3-2]
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(filter) {
		return errFilterUTF8 // [MQTT-1.5.4-1]
	}
	if maxLevels > 0 && levels > maxLevels {
		return errFilterLevels
	}
	return nil
}

// ParseShared splits a shared subscription's filter "$share/{group}/{inner}".
// ok is false, and err nil, for a filter that does not start with "$share/".
// ok is true for every filter that does, with err set if the share name is
// empty or holds '+' or '#' [MQTT-4.8.2-1], if no "/" and filter follow it
// [MQTT-4.8.2-2], or if the whole or the inner filter is invalid. The inner
// filter is checked with no level bound: call ValidFilter(inner, max) to
// apply one. The error wraps packet.ErrTopicFilterInvalid.
func ParseShared(filter string) (group, inner string, ok bool, err error) {
	rest, ok := strings.CutPrefix(filter, sharePrefix)
	if !ok {
		return "", "", false, nil
	}
	if err := ValidFilter(filter, 0); err != nil {
		return "", "", true, err
	}
	group, inner, found := strings.Cut(rest, "/")
	if group == "" || strings.ContainsAny(group, "+#") {
		return "", "", true, errShareGroup // [MQTT-4.8.2-1]
	}
	if !found || inner == "" {
		return "", "", true, errShareNoFilter // [MQTT-4.8.2-2]
	}
	if err := ValidFilter(inner, 0); err != nil {
		return "", "", true, fmt.Errorf("%w: %w", errShareInnerFilter, err)
	}
	return group, inner, true, nil
}

// IsSys reports whether topic starts with '$': such topics ($SYS/...) are
// for the server and are not matched by filters starting with a wildcard
// [MQTT-4.7.2-1].
func IsSys(topic string) bool {
	return topic != "" && topic[0] == '$'
}

// HasWildcard reports whether a valid filter contains '+' or '#'.
func HasWildcard(filter string) bool {
	return strings.ContainsAny(filter, "+#")
}

// Levels returns the number of levels in a topic name or filter: one more
// than the number of '/' separators.
func Levels(s string) int {
	return strings.Count(s, "/") + 1
}
