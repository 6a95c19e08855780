package config

import (
	"reflect"
	"strings"
)

// RedactedValue replaces a secret in a shown configuration.
const RedactedValue = "<redacted>"

// Redacted returns a deep copy of c fit to show to anyone who may read the
// configuration (GET /api/v1/config, `culex config check --print`): every
// field tagged `secret:"true"` that is set reads RedactedValue, and the
// credentials of every URL in any string (comma-separated lists included)
// are masked. c itself is not changed.
func Redacted(c Config) Config {
	out := reflect.New(reflect.TypeOf(c)).Elem()
	redactCopy(out, reflect.ValueOf(c), false)
	return out.Interface().(Config)
}

// redactCopy sets dst to a redacted deep copy of src; secret marks a value
// under a `secret:"true"` field.
func redactCopy(dst, src reflect.Value, secret bool) {
	switch src.Kind() {
	case reflect.Struct:
		t := src.Type()
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).IsExported() {
				redactCopy(dst.Field(i), src.Field(i), t.Field(i).Tag.Get("secret") == "true")
			}
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := 0; i < src.Len(); i++ {
			redactCopy(s.Index(i), src.Index(i), secret)
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		for it := src.MapRange(); it.Next(); {
			v := reflect.New(src.Type().Elem()).Elem()
			redactCopy(v, it.Value(), secret)
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		redactCopy(p.Elem(), src.Elem(), secret)
		dst.Set(p)
	case reflect.String:
		s := src.String()
		if secret && s != "" {
			s = RedactedValue
		} else {
			s = RedactURLs(s)
		}
		dst.SetString(s)
	default:
		dst.Set(src)
	}
}

// RedactURLs masks the credentials in s, read as a comma-separated list of
// URLs or host:port addresses: the password of user:password@ (or the whole
// user information when it has no password, as a token), and the values of
// query parameters named like a password, secret, token or key. Anything
// else is returned unchanged.
func RedactURLs(s string) string {
	if !strings.ContainsAny(s, "@?") {
		return s
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactURL(p)
	}
	return strings.Join(parts, ",")
}

func redactURL(p string) string {
	start := 0
	if i := strings.Index(p, "://"); i >= 0 {
		start = i + 3
	}
	end := len(p)
	if i := strings.IndexAny(p[start:], "/?#"); i >= 0 {
		end = start + i
	}
	if at := strings.LastIndex(p[start:end], "@"); at >= 0 {
		user := p[start : start+at]
		masked := "redacted"
		if name, _, ok := strings.Cut(user, ":"); ok {
			masked = name + ":redacted"
		}
		p = p[:start] + masked + p[start+at:]
	}
	q := strings.Index(p, "?")
	if q < 0 {
		return p
	}
	query, frag, _ := strings.Cut(p[q+1:], "#")
	params := strings.Split(query, "&")
	for i, kv := range params {
		if k, _, ok := strings.Cut(kv, "="); ok && secretName(strings.ToLower(k)) {
			params[i] = k + "=redacted"
		}
	}
	out := p[:q+1] + strings.Join(params, "&")
	if frag != "" || strings.Contains(p[q+1:], "#") {
		out += "#" + frag
	}
	return out
}

// secretName reports whether a key or parameter name names a secret.
func secretName(name string) bool {
	for _, w := range []string{"password", "passwd", "secret", "token", "key"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}
