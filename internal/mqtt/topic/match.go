package topic

import "strings"

// Match reports whether the valid filter matches the valid topic name. It is
// the simple reference the indexes are tested against, and fine for a one-off
// check such as an ACL; use Index for routing.
func Match(filter, topic string) bool {
	// A filter starting with a wildcard does not match a '$' topic
	// [MQTT-4.7.2-1].
	if IsSys(topic) && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			// '#' matches the parent level and any number of children
			// [MQTT-4.7.1-2].
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a".
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}
