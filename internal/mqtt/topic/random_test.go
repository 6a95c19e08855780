package topic

import (
	"fmt"
	"math/rand"
	"slices"
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

// concurrentWriters is how many goroutines the concurrency tests run, each
// with its own subscriber id (its index) and random source.
const concurrentWriters = 8

// stateDiff describes how the final state got (key to value) differs from
// want, listing at most ten keys; "" if they are equal.
func stateDiff(got, want map[string]int) string {
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %s=%d", k, v))
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("%s=%d, want %d", k, g, v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %s=%d", k, v))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	slices.Sort(diffs)
	if len(diffs) > 10 {
		diffs = append(diffs[:10], fmt.Sprintf("... %d differences", len(diffs)))
	}
	return strings.Join(diffs, "; ")
}
