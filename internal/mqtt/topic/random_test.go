package topic

import (
	"math/rand"
	"strings"
)

// topicLevels and the wildcards are the alphabet of the random tests: few
// enough that filters and topics collide often, with the '$' and empty-level
// edge cases in.
var topicLevels = []string{"a", "b", "c", "", "$SYS", "$", "a$"}

// randTopic returns a valid topic name of one to four levels.
func randTopic(r *rand.Rand) string {
	n := 1 + r.Intn(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = topicLevels[r.Intn(len(topicLevels))]
	}
	return strings.Join(levels, "/")
}

// randFilter returns a valid filter of one to four levels, with '+' and '#'.
func randFilter(r *rand.Rand) string {
	n := 1 + r.Intn(4)
	levels := make([]string, n)
	for i := range levels {
		switch k := r.Intn(10); {
		case k < 3:
			levels[i] = "+"
		case k < 4 && i == n-1:
			levels[i] = "#"
		default:
			levels[i] = topicLevels[r.Intn(len(topicLevels))]
		}
	}
	return strings.Join(levels, "/")
}
