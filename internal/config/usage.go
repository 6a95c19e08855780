package config

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// typeName is the type a flag's value is written as in -h.
func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Bool:
		return "bool"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "int"
	}
	return t.String()
}

// section is the part of a key path before its last dot ("general" for
// top-level keys): -h groups flags by it.
func section(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return "general"
}

// usage writes -h: the config and listen flags, then every key's flag by
// section, each with its type, default and the description of the key in
// culex.example.yaml.
func usage(out io.Writer, name string, c *Config) {
	desc := Descriptions()
	fmt.Fprintf(out, "Usage: %s [flags]\n\n", name)
	fmt.Fprint(out, wrap("Every flag sets the config key of its name (dashes for underscores; underscores are accepted too), "+
		"which is also CULEX_ and the key in capitals with dots as underscores in the environment, and the key in the YAML "+
		"file. Precedence: defaults < file < environment < flags. culex.example.yaml documents every key.", 0))
	fmt.Fprintln(out)
	flagLine(out, "-c, --config", "file", "", "YAML config file (environment: CULEX_CONFIG).")
	flagLine(out, "--listen", "list", "tcp://0.0.0.0:1883 ws://0.0.0.0:8083/mqtt",
		"Listener URL, repeatable (environment: CULEX_LISTEN=url,url): tcp://127.0.0.1:1883, "+
			"ssl://:8883?cert_file=c.pem&key_file=k.pem, ws://:8083/mqtt, wss://...; query keys are the listener's config keys ("+
			listenerQueryKeys+"; trusted_proxies repeats or takes addresses separated by +). "+desc["listeners"])
	// Sections in order of first appearance; within one, keys that share
	// a description (a comment over several keys) are listed together.
	var order []string
	bySection := map[string][]field{}
	for _, f := range fields(c) {
		s := section(f.path)
		if _, ok := bySection[s]; !ok {
			order = append(order, s)
		}
		bySection[s] = append(bySection[s], f)
	}
	for _, s := range order {
		fmt.Fprintf(out, "\n%s:\n", s)
		fs := bySection[s]
		for i, f := range fs {
			def := defaultText(f)
			fmt.Fprintf(out, "  --%s %s  (default %s)\n", flagName(f.path), typeName(f.v.Type()), def)
			if i+1 < len(fs) && desc[fs[i+1].path] == desc[f.path] {
				continue
			}
			fmt.Fprint(out, wrap(desc[f.path], 8))
		}
		for _, k := range listFlags {
			if section(k) == s {
				flagLine(out, "--"+flagName(k), "list", "none", desc[k])
			}
		}
	}
}

// listFlags are the list keys that have a flag (repeatable, or
// comma-separated); other lists are set in the file only.
var listFlags = []string{"cluster.peers"}

// defaultText is a key's default as -h shows it.
func defaultText(f field) string {
	if d, ok := dependentDefaults[f.path]; ok {
		return d
	}
	switch v := f.v.Interface().(type) {
	case string:
		if v == "" {
			return `""`
		}
	case time.Duration:
		s := v.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	return fmt.Sprint(f.v.Interface())
}

func flagLine(out io.Writer, name, typ, def, desc string) {
	fmt.Fprintf(out, "  %s %s", name, typ)
	if def != "" {
		fmt.Fprintf(out, "  (default %s)", def)
	}
	fmt.Fprintf(out, "\n%s", wrap(desc, 8))
}

// wrap fills text into lines of at most 80 columns indented by indent.
func wrap(text string, indent int) string {
	var b strings.Builder
	pad := strings.Repeat(" ", indent)
	col := 0
	for _, w := range strings.Fields(text) {
		if col > indent && col+1+len(w) > 80 {
			b.WriteString("\n")
			col = 0
		}
		if col == 0 {
			b.WriteString(pad)
			col = indent
		} else {
			b.WriteString(" ")
			col++
		}
		b.WriteString(w)
		col += len(w)
	}
	b.WriteString("\n")
	return b.String()
}

// normalizeFlags turns underscores into dashes in the names of flags
// given as --mqtt.max_connections, so that the key's own spelling works.
// Values are left alone: every flag of fs takes one, so the argument
// after a flag without "=" is its value.
func normalizeFlags(args []string, fs *flag.FlagSet) []string {
	out := append([]string(nil), args...)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break // flag parsing stops here too
		}
		name, value, hasValue := strings.Cut(a, "=")
		dashes := len(name) - len(strings.TrimLeft(name, "-"))
		if fixed := strings.ReplaceAll(name[dashes:], "_", "-"); fs.Lookup(name[dashes:]) == nil && fs.Lookup(fixed) != nil {
			out[i] = name[:dashes] + fixed
			if hasValue {
				out[i] += "=" + value
			}
		}
		if !hasValue && name[dashes:] != "h" && name[dashes:] != "help" {
			i++ // its value
		}
	}
	return out
}
