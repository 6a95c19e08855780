package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse builds the configuration of `culex serve`: defaults, then the YAML
// file named by -c/--config (or CULEX_CONFIG), then CULEX_* environment
// variables, then flags, and validates the result. Every error names the key
// it is about. A -h/--help prints the flags to out and returns flag.ErrHelp.
func Parse(name string, args, environ []string, out io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned as one line; -h prints usage
	fs.Usage = func() {}     // printed below for -h only, not for a bad flag
	var file string
	var listens []string
	fs.StringVar(&file, "c", "", "YAML config `file`")
	fs.StringVar(&file, "config", "", "YAML config `file`")
	fs.Func("listen", "listener `URL`, repeatable", func(s string) error { listens = append(listens, s); return nil })
	var peers []string
	fs.Func("cluster.peers", "config key cluster.peers: a core's cluster port `host:port`, repeatable or comma-separated (or one DNS name resolving to every core)",
		func(s string) error { peers = append(peers, splitList(s)...); return nil })
	// Every scalar key is also a flag. They are applied after the file and
	// the environment, so they are recorded here and set below.
	type setting struct {
		path, value string
	}
	var set []setting
	for _, f := range fields(&c) {
		path := f.path
		fs.Func(flagName(path), "config key "+path, func(s string) error { set = append(set, setting{path, s}); return nil })
	}
	if err := fs.Parse(normalizeFlags(args, fs)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(out, name, &c)
			return c, err
		}
		return c, flagError(err, fs)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	env := envMap(environ)
	if file == "" {
		file = env["CULEX_CONFIG"]
	}
	if file != "" {
		if err := LoadFile(file, &c); err != nil {
			return c, err
		}
	}
	if err := applyEnv(&c, env); err != nil {
		return c, err
	}
	byPath := fieldMap(&c)
	for _, s := range set {
		if err := byPath[s.path].set(s.value); err != nil {
			return c, fmt.Errorf("flag --%s: %w", flagName(s.path), err)
		}
	}
	if len(listens) > 0 {
		ls, err := listenersFromURLs(listens)
		if err != nil {
			return c, fmt.Errorf("flag --listen: %w", err)
		}
		c.Listeners = ls
	}
	if peers != nil {
		c.Cluster.Peers = peers
	}
	return c, c.Validate()
}

// dependentDefaults describes, for -h, the defaults that depend on other
// keys (auth.go).
var dependentDefaults = map[string]string{
	"auth.allow_anonymous":    "true without an auth backend, false with one",
	"auth.acl_default":        "deny with an acl_file, allow without",
	"cluster.node_name":       "the host name",
	"kafka.group_instance_id": "a random id stored in data_dir (none without one); culex bridge: stored in kafka.spool.dir, else host name + kafka.source.client_id",
}

func fieldMap(c *Config) map[string]field {
	m := make(map[string]field)
	for _, f := range fields(c) {
		m[f.path] = f
	}
	return m
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "CULEX_") {
			m[k] = v
		}
	}
	return m
}

// applyEnv sets keys from CULEX_* variables; CULEX_LISTEN holds listener
// URLs separated by commas. An unknown CULEX_ variable is an error.
func applyEnv(c *Config, env map[string]string) error {
	byEnv := make(map[string]field)
	for _, f := range fields(c) {
		byEnv[envName(f.path)] = f
	}
	for k, v := range env {
		switch f, ok := byEnv[k]; {
		case ok:
			if err := f.set(v); err != nil {
				return fmt.Errorf("environment %s: %w", k, err)
			}
		case k == "CULEX_LISTEN":
			ls, err := listenersFromURLs(strings.Split(v, ","))
			if err != nil {
				return fmt.Errorf("environment %s: %w", k, err)
			}
			c.Listeners = ls
		case k == "CULEX_CLUSTER_PEERS":
			c.Cluster.Peers = splitList(v)
		case k == "CULEX_CONFIG", ctlEnv[k]:
		case k == adminPasswordEnv:
			if _, long := env[envName("admin.default_password")]; !long {
				c.Admin.DefaultPassword = v
			}
		default:
			return fmt.Errorf("environment %s: unknown setting (keys map to CULEX_ + the key path in capitals, e.g. CULEX_MQTT_MAX_CONNECTIONS)", k)
		}
	}
	return nil
}

// listenersFromURLs turns --listen URLs into listeners; query parameters
// set the listener's keys.
func listenersFromURLs(urls []string) ([]Listener, error) {
	var out []Listener
	for _, raw := range urls {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		l, err := listenerFromURL(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// listenerQueryKeys are the keys a listener URL's query may set.
const listenerQueryKeys = "proxy_protocol, trusted_proxies, cert_file, key_file, client_ca_file, client_auth"

func listenerFromURL(raw string) (Listener, error) {
	base, query, _ := strings.Cut(raw, "?")
	l := Listener{URL: base}
	if query == "" {
		return l, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return l, fmt.Errorf("%s: bad query: %w", raw, err)
	}
	byPath := make(map[string]field)
	var fs []field
	walk(reflect.ValueOf(&l).Elem(), "", &fs)
	for _, f := range fs {
		byPath[f.path] = f
		byPath[strings.TrimPrefix(f.path, "tls.")] = f
	}
	for k, vs := range q {
		if k == "trusted_proxies" {
			// Repeated (trusted_proxies=a&trusted_proxies=b) or separated by
			// spaces ("+" in a URL): CULEX_LISTEN separates URLs by commas.
			for _, v := range vs {
				l.TrustedProxies = append(l.TrustedProxies, strings.Fields(v)...)
			}
			continue
		}
		f, ok := byPath[k]
		if !ok || f.path == "url" {
			return l, fmt.Errorf("%s: unknown listener key %q (known: %s)", raw, k, listenerQueryKeys)
		}
		if err := f.set(vs[len(vs)-1]); err != nil {
			return l, fmt.Errorf("%s: %w", raw, err)
		}
	}
	return l, nil
}

// LoadFile reads a YAML config file over c. Unknown keys and bad values are
// errors naming the key and line.
func LoadFile(path string, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := loadYAML(data, c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

func loadYAML(data []byte, c *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil // empty file: defaults
	}
	return decodeStruct(doc.Content[0], reflect.ValueOf(c).Elem(), "")
}

// decodeStruct sets the fields of v from a YAML mapping, one scalar at a
// time, so that every error can name its key.
func decodeStruct(n *yaml.Node, v reflect.Value, prefix string) error {
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return nil
		}
		return fmt.Errorf("line %d: %s must be a mapping of keys", n.Line, orTop(prefix))
	}
	known := keys(v.Type(), prefix)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		path := k.Value
		if prefix != "" {
			path = prefix + "." + k.Value
		}
		i, ok := fieldByTag(v, k.Value)
		if !ok {
			msg := fmt.Sprintf("line %d: unknown key %q", k.Line, path)
			if s := suggest(path, known); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return errors.New(msg)
		}
		if err := decodeValue(val, leaf(v, i, path)); err != nil {
			return err
		}
	}
	return nil
}

func decodeValue(n *yaml.Node, f field) error {
	fv, path := f.v, f.path
	if fv.Kind() == reflect.Pointer { // an optional key: nil when left out
		p := reflect.New(fv.Type().Elem())
		f.v = p.Elem()
		if err := decodeValue(n, f); err != nil {
			return err
		}
		fv.Set(p)
		return nil
	}
	switch {
	case fv.Kind() == reflect.Struct && fv.Type() != durationType:
		return decodeStruct(n, fv, path)
	case fv.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s must be a list", n.Line, path)
		}
		s := reflect.MakeSlice(fv.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			if item.Kind == yaml.ScalarNode && fv.Type().Elem() == reflect.TypeOf(Listener{}) {
				l, err := listenerFromURL(item.Value)
				if err != nil {
					return fmt.Errorf("line %d: %s: %w", item.Line, ipath, err)
				}
				s.Index(i).Set(reflect.ValueOf(l))
				continue
			}
			if err := decodeValue(item, field{path: ipath, v: s.Index(i)}); err != nil {
				return err
			}
		}
		fv.Set(s)
		return nil
	case n.Kind != yaml.ScalarNode:
		return fmt.Errorf("line %d: %s must be a single value", n.Line, path)
	}
	if err := f.set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// fieldByTag returns the index of v's field whose yaml tag is name.
func fieldByTag(v reflect.Value, name string) (int, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("yaml") == name {
			return i, true
		}
	}
	return 0, false
}

func orTop(prefix string) string {
	if prefix == "" {
		return "the config"
	}
	return prefix
}
