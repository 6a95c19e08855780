package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const ctlUsage = `Usage: culex ctl [flags] COMMAND [ARGS]

An operator CLI over the admin REST API (docs/admin.md): tables by
default, the API's JSON with --json.

Commands:
  clients list             clients (filters: --client-id, --username, --address, --connected)
  clients show ID          one client with its subscriptions and queue
  clients kick ID          disconnect a client
  sessions                 persistent sessions (--connected=false: offline ones)
  subscriptions            subscriptions (filters: --client-id, --topic)
  topics                   subscribed filters and their subscriber counts
  retained list            retained messages (--topic FILTER, default #)
  retained show TOPIC      one retained message with its payload
  retained delete TOPIC    clear a retained message
  bans                     bans in force
  bans add KIND VALUE      ban a client_id, username or address (--duration, --reason)
  bans delete KIND VALUE   lift a ban
  users                    device users of the users file
  users add NAME           add one (password prompted, or a line on stdin; --superuser)
  users passwd NAME        change its password (prompted, or a line on stdin)
  users delete NAME        remove one
  acl                      the ACL rules;  acl reload: re-read the users and ACL files
  routes                   Kafka routes, command routes and spool
  cluster status           the nodes
  stats                    the node's counters

The address and key come from --url and --api-key, or CULEX_ADMIN_URL and
CULEX_API_KEY (ID:SECRET, made in the dashboard's settings or with
POST /api/v1/api-keys). Flags:
`

// ctl is `culex ctl`.
func ctl(args []string) error { return ctlCmd(args, os.Stdin, os.Stdout, os.Stderr) }

// ctlOpts are ctl's flags; they may come before, between or after the
// command's words.
type ctlOpts struct {
	url, key, caFile     string
	json                 bool
	timeout              time.Duration
	clientID, user, addr string
	topic, connected     string
	page, limit          int
	duration             time.Duration
	reason               string
	superuser            bool
}

func ctlCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var o ctlOpts
	fs := flag.NewFlagSet("culex ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", envOr("CULEX_ADMIN_URL", "http://127.0.0.1:18083"), "admin listener `URL` (default $CULEX_ADMIN_URL or http://127.0.0.1:18083)")
	fs.StringVar(&o.key, "api-key", os.Getenv("CULEX_API_KEY"), "API `key` ID:SECRET (default $CULEX_API_KEY)")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM `file` of the CA that signs an https admin listener's certificate (default: the system's)")
	fs.BoolVar(&o.json, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "request `timeout`")
	fs.StringVar(&o.clientID, "client-id", "", "clients, sessions, subscriptions: client ids containing `TEXT` (subscriptions: exact)")
	fs.StringVar(&o.user, "username", "", "clients: usernames containing `TEXT`")
	fs.StringVar(&o.addr, "address", "", "clients: addresses containing `TEXT`")
	fs.StringVar(&o.connected, "connected", "", "clients, sessions: true or false")
	fs.StringVar(&o.topic, "topic", "", "subscriptions, topics: filters containing `TEXT`; retained list: a topic `FILTER`")
	fs.IntVar(&o.page, "page", 1, "`page` of a list")
	fs.IntVar(&o.limit, "limit", 100, "entries per page")
	fs.DurationVar(&o.duration, "duration", 0, "bans add: how long (0: until lifted)")
	fs.StringVar(&o.reason, "reason", "", "bans add: why")
	fs.BoolVar(&o.superuser, "superuser", false, "users add: the user bypasses ACLs")
	fs.Usage = func() { fmt.Fprint(stderr, ctlUsage); fs.PrintDefaults() }
	var words []string
	for {
		fs.SetOutput(io.Discard) // an unknown flag is one line, below
		err := fs.Parse(args)
		fs.SetOutput(stderr)
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return nil
		}
		if err != nil {
			return ctlFlagError(err, fs)
		}
		if fs.NArg() == 0 {
			break
		}
		words, args = append(words, fs.Arg(0)), fs.Args()[1:]
	}
	if len(words) == 0 || words[0] == "help" {
		fs.Usage()
		if len(words) == 0 {
			return errors.New("ctl: missing command")
		}
		return nil
	}
	hc := &http.Client{Timeout: o.timeout}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return fmt.Errorf("ctl: --ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ctl: --ca-file %s: no PEM certificate", o.caFile)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	c := &ctlClient{o: o, out: stdout, errOut: stderr, hc: hc}
	return c.run(words, stdin)
}

// ctlFlagError says in one line which flag is unknown, and the known one
// sharing its longest prefix.
func ctlFlagError(err error, fs *flag.FlagSet) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: ")
	if !ok {
		return fmt.Errorf("ctl: %w", err)
	}
	name = strings.TrimLeft(name, "-")
	best, bestN := "", 2
	fs.VisitAll(func(f *flag.Flag) {
		n := 0
		for n < len(name) && n < len(f.Name) && name[n] == f.Name[n] {
			n++
		}
		if n > bestN {
			best, bestN = f.Name, n
		}
	})
	hint := ""
	if best != "" {
		hint = fmt.Sprintf(" (did you mean --%s?)", best)
	}
	return fmt.Errorf("ctl: unknown flag --%s%s; culex ctl -h lists the flags", name, hint)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// ctlClient calls the API.
type ctlClient struct {
	o      ctlOpts
	out    io.Writer
	errOut io.Writer // prompts
	hc     *http.Client
}

// apiError is the API's error body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// call sends body as JSON (if not nil) and decodes the answer into out
// (if not nil); with --json it prints the answer instead.
func (c *ctlClient) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, strings.TrimRight(c.o.url, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("ctl: --url %q: %w", c.o.url, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.o.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.o.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ctl: %w (is the admin listener at %s? see --url)", err, c.o.url)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var e apiError
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			return fmt.Errorf("ctl: %s %s: %s", method, path, resp.Status)
		}
		if e.Code == "unauthorized" && c.o.key == "" {
			return fmt.Errorf("ctl: %s (set --api-key or CULEX_API_KEY)", e.Message)
		}
		return fmt.Errorf("ctl: %s: %s", e.Code, e.Message)
	}
	if c.o.json {
		if len(data) == 0 {
			return nil
		}
		var buf bytes.Buffer
		if json.Indent(&buf, data, "", "  ") != nil {
			buf.Reset()
			buf.Write(data)
		}
		buf.WriteByte('\n')
		_, err := c.out.Write(buf.Bytes())
		return err
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// query builds ?k=v&... of the non-empty values, with the paging flags.
func (c *ctlClient) query(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	q.Set("page", fmt.Sprint(c.o.page))
	q.Set("limit", fmt.Sprint(c.o.limit))
	return "?" + q.Encode()
}

// want checks the number of words of a command.
func want(words []string, n int, usage string) error {
	if len(words) != n {
		return fmt.Errorf("ctl: usage: culex ctl %s", usage)
	}
	return nil
}

func (c *ctlClient) run(w []string, stdin io.Reader) error {
	sub := ""
	if len(w) > 1 {
		sub = w[1]
	}
	switch w[0] {
	case "clients":
		switch sub {
		case "list", "":
			return c.clients("/api/v1/clients")
		case "show":
			if err := want(w, 3, "clients show ID"); err != nil {
				return err
			}
			return c.client(w[2])
		case "kick":
			if err := want(w, 3, "clients kick ID"); err != nil {
				return err
			}
			return c.done(c.call("POST", "/api/v1/clients/"+url.PathEscape(w[2])+"/kick", nil, nil), "kicked %s", w[2])
		}
	case "sessions":
		return c.clients("/api/v1/sessions")
	case "subscriptions":
		return c.subscriptions()
	case "topics":
		return c.topics()
	case "retained":
		switch sub {
		case "list", "":
			return c.retainedList()
		case "show", "get":
			if err := want(w, 3, "retained show TOPIC"); err != nil {
				return err
			}
			return c.retainedShow(w[2])
		case "delete", "rm":
			if err := want(w, 3, "retained delete TOPIC"); err != nil {
				return err
			}
			return c.done(c.call("DELETE", "/api/v1/retained-message?topic="+url.QueryEscape(w[2]), nil, nil), "deleted the retained message of %s", w[2])
		}
	case "bans":
		switch sub {
		case "list", "":
			return c.bans()
		case "add":
			if err := want(w, 4, "bans add client_id|username|address VALUE [--duration D] [--reason R]"); err != nil {
				return err
			}
			body := map[string]any{"kind": w[2], "value": w[3], "reason": c.o.reason, "duration_seconds": int64(c.o.duration / time.Second)}
			return c.done(c.call("POST", "/api/v1/bans", body, nil), "banned %s %s", w[2], w[3])
		case "delete", "rm":
			if err := want(w, 4, "bans delete KIND VALUE"); err != nil {
				return err
			}
			return c.done(c.call("DELETE", "/api/v1/bans/"+url.PathEscape(w[2])+"/"+url.PathEscape(w[3]), nil, nil), "lifted the ban of %s %s", w[2], w[3])
		}
	case "users":
		return c.users(w, sub, stdin)
	case "acl":
		switch sub {
		case "", "show":
			return c.acl("GET", "/api/v1/acl")
		case "reload":
			return c.acl("POST", "/api/v1/acl/reload")
		}
	case "routes", "kafka":
		return c.routes()
	case "cluster", "nodes":
		if sub == "" || sub == "status" {
			return c.nodes()
		}
	case "stats":
		return c.stats()
	}
	return fmt.Errorf("ctl: unknown command %q (culex ctl help lists them)", strings.Join(w, " "))
}

// done prints what a change did, unless it failed or --json printed.
func (c *ctlClient) done(err error, format string, args ...any) error {
	if err != nil || c.o.json {
		return err
	}
	fmt.Fprintf(c.out, format+"\n", args...)
	return nil
}
