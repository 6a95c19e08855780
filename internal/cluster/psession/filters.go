package psession

import (
	"slices"
	"strings"

	"github.com/culexmq/culex/internal/mqtt/topic"
)

// plainFilters are filters without the shared ones ($share/group/f) and
// without repeats. A shared subscription's messages are not stored for
// the group's filter: the member a message goes to has its copy written
// for it alone (StoreFor), so the log's messages on the filter's topics
// are not the member's.
func plainFilters(filters []string) []string {
	out := make([]string, 0, len(filters))
	for _, f := range filters {
		if _, _, shared, _ := topic.ParseShared(f); !shared && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// sharedSub is a shared subscription $share/group/filter.
type sharedSub struct{ group, filter string }

// sharedSubs are the shared subscriptions among filters; nil if none.
func sharedSubs(filters []string) []sharedSub {
	var out []sharedSub
	for _, f := range filters {
		if group, inner, shared, _ := topic.ParseShared(f); shared {
			out = append(out, sharedSub{group, inner})
		}
	}
	return out
}

// sharedKey is the shared index's subscriber of a record's group.
func sharedKey(key, group string) string { return key + "\x00" + group }

// matchAny says whether one of filters (plain filters) matches t.
func matchAny(filters []string, t string) bool {
	for _, f := range filters {
		if topic.Match(f, t) {
			return true
		}
	}
	return false
}

// minimalSubjects drops the subjects another one covers (and repeats):
// JetStream refuses a consumer whose filter subjects are subsets of each
// other ("a.>" with "a.b"). Subjects that overlap without one covering
// the other ("a.*" and "*.b") are allowed; a message matching both comes
// once.
func minimalSubjects(subjects []string) []string {
	out := make([]string, 0, len(subjects))
	for i, a := range subjects {
		covered := false
		for j, b := range subjects {
			if i == j {
				continue
			}
			// Of two equal subjects the first is kept.
			if a == b && j < i || a != b && subsetOf(a, b) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, a)
		}
	}
	return out
}

// subsetOf says whether every subject that a matches, b matches (a and b
// are subjects that may hold '*' and '>').
func subsetOf(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i, t := range bt {
		if t == ">" {
			return len(at) > i
		}
		if i >= len(at) || at[i] == ">" {
			return false
		}
		if t != "*" && (at[i] == "*" || at[i] != t) {
			return false
		}
	}
	return len(at) == len(bt)
}
