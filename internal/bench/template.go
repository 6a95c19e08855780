package bench

import (
	"strconv"
	"strings"
)

// Template is a client-specific string such as a topic, client id, username
// or password: %i is the client index, %c the client id, %% a literal percent.
// Any other %x is kept as written so that topics with a literal % still work.
type Template struct {
	parts []tmplPart
}

type tmplPart struct {
	lit string
	arg byte // 0: literal, 'i': index, 'c': client id
}

// ParseTemplate compiles s once; Expand is then cheap per client.
func ParseTemplate(s string) Template {
	var t Template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tmplPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			lit.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case 'i', 'c':
			flush()
			t.parts = append(t.parts, tmplPart{arg: s[i+1]})
			i++
		case '%':
			lit.WriteByte('%')
			i++
		default:
			lit.WriteByte('%')
		}
	}
	flush()
	return t
}

// Expand returns the template for client index i with client id cid.
func (t Template) Expand(i int, cid string) string {
	if len(t.parts) == 1 && t.parts[0].arg == 0 {
		return t.parts[0].lit
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.arg {
		case 'i':
			b.WriteString(strconv.Itoa(i))
		case 'c':
			b.WriteString(cid)
		default:
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// IsEmpty reports whether the template expands to the empty string.
func (t Template) IsEmpty() bool { return len(t.parts) == 0 }

// HasClientID reports whether the template uses %c.
func (t Template) HasClientID() bool {
	for _, p := range t.parts {
		if p.arg == 'c' {
			return true
		}
	}
	return false
}

// topicMatch reports whether topic name matches filter with MQTT wildcards
// [MQTT-4.7]. The bench uses it only to predict the expected deliveries.
func topicMatch(filter, topic string) bool {
	if strings.HasPrefix(filter, "$share/") {
		if i := strings.IndexByte(filter[len("$share/"):], '/'); i >= 0 {
			filter = filter[len("$share/")+i+1:]
		}
	}
	if strings.HasPrefix(topic, "$") && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			// "a/#" matches "a" [MQTT-4.7.1-2].
			return fmore == tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}
