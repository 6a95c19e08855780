package kafka

import (
	"fmt"
	"strconv"
	"strings"
)

// template is a string with ${var} references, parsed once at start.
type template struct {
	src   string
	parts []part
}

// part is literal text or, when name is set, a variable.
type part struct {
	lit   string
	name  string
	level int // 1-based MQTT topic level for ${1}..${n}; 0 otherwise
}

// vars are the values a template may reference when rendering one message.
type vars struct {
	topic    string
	clientID string
	username string
}

// mqttVars are the names an MQTT -> Kafka template may use besides levels.
var mqttVars = map[string]bool{"topic": true, "clientid": true, "username": true}

// parseTemplate parses s, accepting level references and the names in allowed.
func parseTemplate(s string, allowed map[string]bool) (template, error) {
	return parseTemplateFunc(s, func(name string) bool { return allowed[name] }, true)
}

// parseTemplateFunc parses s, accepting the names allowed reports and, when
// levels is set, ${1}..${n}.
func parseTemplateFunc(s string, allowed func(string) bool, levels bool) (template, error) {
	t := template{src: s}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "${")
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return template{}, fmt.Errorf("template %q: unclosed ${", s)
		}
		name := rest[i+2 : i+j]
		p := part{name: name}
		if n, err := strconv.Atoi(name); err == nil && levels {
			if n < 1 {
				return template{}, fmt.Errorf("template %q: topic levels count from ${1}", s)
			}
			p.level = n
		} else if !allowed(name) {
			return template{}, fmt.Errorf("template %q: unknown variable ${%s}", s, name)
		}
		t.parts = append(t.parts, p)
		rest = rest[i+j+1:]
	}
	return t, nil
}

// literal reports whether t references no variable, and its text.
func (t template) literal() (string, bool) {
	for _, p := range t.parts {
		if p.name != "" {
			return "", false
		}
	}
	return t.src, true
}

// render expands t for v. A level beyond the topic's depth is an error.
func (t template) render(v *vars) (string, error) {
	if s, ok := t.literal(); ok {
		return s, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.name == "":
			b.WriteString(p.lit)
		case p.level > 0:
			l, ok := level(v.topic, p.level)
			if !ok {
				return "", fmt.Errorf("topic %q has no level %d", v.topic, p.level)
			}
			b.WriteString(l)
		case p.name == "topic":
			b.WriteString(v.topic)
		case p.name == "clientid":
			b.WriteString(v.clientID)
		case p.name == "username":
			b.WriteString(v.username)
		}
	}
	return b.String(), nil
}

// renderFunc expands t, asking value for each variable.
func (t template) renderFunc(value func(name string) (string, error)) (string, error) {
	var b strings.Builder
	for _, p := range t.parts {
		if p.name == "" {
			b.WriteString(p.lit)
			continue
		}
		v, err := value(p.name)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// level returns the n-th (1-based) level of topic.
func level(topic string, n int) (string, bool) {
	for i := 1; ; i++ {
		j := strings.IndexByte(topic, '/')
		if i == n {
			if j < 0 {
				return topic, true
			}
			return topic[:j], true
		}
		if j < 0 {
			return "", false
		}
		topic = topic[j+1:]
	}
}

// validKafkaTopic checks a rendered Kafka topic name: 1 to 249 characters
// from [a-zA-Z0-9._-], and not "." or "..".
func validKafkaTopic(s string) error {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return fmt.Errorf("invalid kafka topic %q", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("invalid kafka topic %q: character %q (allowed: letters, digits, . _ -)", s, c)
		}
	}
	return nil
}
