package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// field is one settable leaf of Config, named by its dotted YAML path
// ("mqtt.max_connections").
type field struct {
	path string
	v    reflect.Value
	// given, when valid, is the bool that set marks true: the field named
	// by a `given:"Name"` tag, for keys whose default depends on whether
	// they were given at all.
	given reflect.Value
}

// leaf returns the field i of struct v as a settable leaf at path.
func leaf(v reflect.Value, i int, path string) field {
	f := field{path: path, v: v.Field(i)}
	if g := v.Type().Field(i).Tag.Get("given"); g != "" {
		f.given = v.FieldByName(g)
	}
	return f
}

var durationType = reflect.TypeOf(time.Duration(0))

// fields lists the scalar keys of c in declaration order. Lists (listeners,
// routes) are set from the file; listeners also by --listen and CULEX_LISTEN.
func fields(c *Config) []field {
	var out []field
	walk(reflect.ValueOf(c).Elem(), "", &out)
	return out
}

func walk(v reflect.Value, prefix string, out *[]field) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("yaml")
		if name == "" || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Slice:
			continue
		case fv.Kind() == reflect.Struct:
			walk(fv, path, out)
		default:
			*out = append(*out, leaf(v, i, path))
		}
	}
}

// keys returns every valid key path of the struct type t, for unknown-key
// checks and suggestions.
func keys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("yaml")
		if name == "" || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		out = append(out, path)
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct && ft != durationType {
			out = append(out, keys(ft, path)...)
		}
	}
	return out
}

// set parses s into the field's value. Durations take Go syntax ("10s",
// "1h30m"); booleans true/false/1/0/yes/no.
func (f field) set(s string) error {
	s = strings.TrimSpace(s)
	v := f.v
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration (examples: 500ms, 10s, 1h)", f.path, s)
		}
		if d < 0 {
			return fmt.Errorf("%s: %s must not be negative", f.path, s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "1", "yes", "on":
			v.SetBool(true)
		case "false", "0", "no", "off":
			v.SetBool(false)
		default:
			return fmt.Errorf("%s: %q is not a boolean (true or false)", f.path, s)
		}
	case v.CanInt():
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil || n < 0 {
			return fmt.Errorf("%s: %q is not a whole number >= 0", f.path, s)
		}
		v.SetInt(n)
	case v.CanUint():
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			max := uint64(1)<<v.Type().Bits() - 1
			return fmt.Errorf("%s: %q is not a whole number from 0 to %d", f.path, s, max)
		}
		v.SetUint(n)
	default:
		return fmt.Errorf("%s: unsupported type %s", f.path, v.Type())
	}
	if f.given.IsValid() {
		f.given.SetBool(true)
	}
	return nil
}

// envName is the environment variable of a key: CULEX_ and the path in
// upper case with dots as underscores (CULEX_MQTT_MAX_CONNECTIONS).
func envName(path string) string {
	return "CULEX_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// flagName is the command-line flag of a key: the path with underscores as
// dashes (--mqtt.max-connections).
func flagName(path string) string { return strings.ReplaceAll(path, "_", "-") }
