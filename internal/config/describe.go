package config

import (
	"regexp"
	"strings"
	"sync"

	culex "github.com/culexmq/culex"
)

// Descriptions maps each key path of culex.example.yaml (mqtt.max_connections)
// to its description: the comment lines above the key, and the comment at
// the end of its line. A key commented out ("# allow_anonymous: false")
// counts as a key. A comment describes every key that follows it up to
// the next comment or blank line, as "Retained messages, and their bytes"
// does max_retained_messages and max_retained_bytes. Lines of list items and examples inside comments
// ("#   - name: telemetry") are part of the description of the key below.
func Descriptions() map[string]string { return descriptionsOnce() }

var descriptionsOnce = sync.OnceValue(func() map[string]string { return describe(string(culex.ExampleConfig)) })

var (
	keyLine       = regexp.MustCompile(`^( *)([a-z0-9_]+):(?: (.*))?$`)
	commentedKey  = regexp.MustCompile(`^( *)# ([a-z0-9_]+): (.+)$`)
	commentLine   = regexp.MustCompile(`^ *#(?: (.*))?$`)
	trailingBlurb = regexp.MustCompile(`\s+# (.*)$`)
)

func describe(doc string) map[string]string {
	type level struct {
		indent int
		key    string
	}
	out := map[string]string{}
	var stack []level
	var pending []string // comment lines above the next key
	prevDesc := ""       // the previous key's description, while in a run
	for _, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		var m []string
		switch {
		case trimmed == "":
			pending, prevDesc = nil, ""
			continue
		case strings.HasPrefix(trimmed, "- "):
			continue // a list item of the defaults (listeners)
		case commentedKey.MatchString(line):
			m = commentedKey.FindStringSubmatch(line)
		case commentLine.MatchString(line):
			pending = append(pending, commentLine.FindStringSubmatch(line)[1])
			prevDesc = ""
			continue
		case keyLine.MatchString(line):
			m = keyLine.FindStringSubmatch(line)
		default:
			continue
		}
		indent, key, value := len(m[1]), m[2], m[3]
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		path := key
		if len(stack) > 0 {
			path = stack[len(stack)-1].key + "." + key
		}
		desc := strings.Join(pending, " ")
		if t := trailingBlurb.FindStringSubmatch(value); t != nil {
			desc = strings.TrimSpace(desc + " " + t[1])
		}
		section := strings.TrimSpace(trailingBlurb.ReplaceAllString(value, "")) == ""
		if desc == "" && !section {
			desc = prevDesc
		}
		out[path] = strings.Join(strings.Fields(desc), " ")
		pending, prevDesc = nil, desc
		if section {
			stack = append(stack, level{indent, path}) // a section
		}
	}
	return out
}
