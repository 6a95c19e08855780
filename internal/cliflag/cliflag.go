// Package cliflag parses the flags of Culex's commands the same way
// everywhere: -h prints the usage and exits 0 (the caller sees
// flag.ErrHelp), and a bad flag is one line, with the closest known flag
// for a misspelt one ("did you mean --mqtt.max-connections?"), instead of
// the flag package's error followed by the whole usage.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Parse parses args with fs. On -h it writes the usage to out (usage, or
// the flag package's default when nil) and returns flag.ErrHelp; any other
// error is returned as one line, naming the closest flag of fs when the
// flag is unknown. Nothing else is written.
func Parse(fs *flag.FlagSet, args []string, out io.Writer, usage func()) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(out)
		if usage == nil {
			fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		} else {
			usage()
		}
		return err
	}
	return unknownFlag(err, fs)
}

const undefinedPrefix = "flag provided but not defined: "

// unknownFlag turns the flag package's error for an unknown flag into one
// line with the closest known flag.
func unknownFlag(err error, fs *flag.FlagSet) error {
	msg := err.Error()
	if !strings.HasPrefix(msg, undefinedPrefix) {
		return err
	}
	name := strings.TrimLeft(strings.TrimPrefix(msg, undefinedPrefix), "-")
	var known []string
	fs.VisitAll(func(f *flag.Flag) { known = append(known, f.Name) })
	hint := ""
	if s := Closest(name, known); s != "" {
		hint = fmt.Sprintf(" (did you mean --%s?)", s)
	}
	return errors.New("unknown flag --" + name + hint + "; -h lists the flags")
}

// Closest returns the known name closest to unknown (Levenshtein
// distance below half its length plus two), or "".
func Closest(unknown string, known []string) string {
	best, bestD := "", len(unknown)/2+2
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	for _, k := range sorted {
		if d := distance(unknown, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
