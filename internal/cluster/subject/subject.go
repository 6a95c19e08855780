// Package subject maps MQTT topic names and filters to NATS subjects and
// back. Each topic level becomes one subject token; the bytes a token
// cannot hold are escaped so that every valid topic round-trips:
//
//   - a byte from '.', ' ', '*', '>', '~', a control byte (below 0x20) or
//     DEL becomes '~' and two upper-case hex digits ("a.b" -> "a~2Eb");
//   - an empty level becomes the token "~" (no escape is a lone '~');
//   - every other byte, UTF-8 included, is kept; so is '$'.
//
// In filters the wildcard levels map to NATS wildcards: '+' to '*' and '#'
// to '>'. As '#' also matches its parent level in MQTT ("a/#" matches "a")
// and '>' in NATS needs one more token, Filter returns the parent's
// subject too. One rule differs: MQTT keeps topics that start with '$' from
// filters that start with a wildcard [MQTT-4.7.2-1], which no subject can
// say; Match applies it, and a receiver must too.
package subject

import (
	"errors"
	"strings"
)

const hexDigits = "0123456789ABCDEF"

// escaped reports whether b needs an escape inside a token.
func escaped(b byte) bool {
	return b <= ' ' || b == '.' || b == '*' || b == '>' || b == '~' || b == 0x7F
}

// appendLevel appends the token of one topic level.
func appendLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, '~')
	}
	for i := 0; i < len(level); i++ {
		b := level[i]
		if escaped(b) {
			dst = append(dst, '~', hexDigits[b>>4], hexDigits[b&15])
			continue
		}
		dst = append(dst, b)
	}
	return dst
}

// Append appends the subject of the topic name t to dst.
func Append(dst []byte, t string) []byte {
	for i := 0; ; i++ {
		j := strings.IndexByte(t[i:], '/')
		if j < 0 {
			return appendLevel(dst, t[i:])
		}
		dst = appendLevel(dst, t[i:i+j])
		dst = append(dst, '.')
		i += j
	}
}

// Topic returns the subject of a topic name (no wildcards).
func Topic(t string) string { return string(Append(nil, t)) }

// Filter returns the subjects of an MQTT filter: one, or two for a filter
// that ends in '#' after at least one level ("a/#": "a" and "a.>").
func Filter(f string) []string {
	levels := strings.Split(f, "/")
	var b []byte
	for i, l := range levels {
		if i > 0 {
			b = append(b, '.')
		}
		switch l {
		case "+":
			b = append(b, '*')
		case "#":
			b = append(b, '>')
		default:
			b = appendLevel(b, l)
		}
	}
	s := string(b)
	if len(levels) > 1 && levels[len(levels)-1] == "#" {
		return []string{s[:len(s)-2], s}
	}
	return []string{s}
}

// ErrBadSubject is returned for a subject that no topic maps to.
var ErrBadSubject = errors.New("subject: not the subject of an MQTT topic")

// Decode returns the topic name of a subject made by Topic.
func Decode(s string) (string, error) {
	out := make([]byte, 0, len(s))
	for i, tok := range strings.Split(s, ".") {
		if i > 0 {
			out = append(out, '/')
		}
		if tok == "~" {
			continue
		}
		if tok == "" {
			return "", ErrBadSubject
		}
		for j := 0; j < len(tok); j++ {
			c := tok[j]
			switch {
			case c == '~':
				if j+2 >= len(tok) {
					return "", ErrBadSubject
				}
				hi, lo := unhex(tok[j+1]), unhex(tok[j+2])
				if hi < 0 || lo < 0 {
					return "", ErrBadSubject
				}
				b := byte(hi<<4 | lo)
				if !escaped(b) {
					return "", ErrBadSubject // not canonical
				}
				out = append(out, b)
				j += 2
			case escaped(c) || c == '/':
				return "", ErrBadSubject
			default:
				out = append(out, c)
			}
		}
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Match reports whether a NATS filter subject (from Filter) matches a
// topic's subject (from Topic) as NATS matches them, with MQTT's rule for
// topics starting with '$' given the MQTT filter's first level.
func Match(filterSubject, topicSubject string) bool {
	if strings.HasPrefix(topicSubject, "$") && (filterSubject == ">" || strings.HasPrefix(filterSubject, ">.") ||
		filterSubject == "*" || strings.HasPrefix(filterSubject, "*.")) {
		return false
	}
	f, t := strings.Split(filterSubject, "."), strings.Split(topicSubject, ".")
	for i, ft := range f {
		if ft == ">" {
			return len(t) > i
		}
		if i >= len(t) || (ft != "*" && ft != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}
