package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The tables of `culex ctl`: one function per listing, each decoding the
// fields it shows. With --json, call prints the API's answer and out stays
// empty, so each returns right after call when c.o.json is set.

func (c *ctlClient) table(header string, rows [][]any, meta *ctlMeta) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		s := make([]string, len(r))
		for i, v := range r {
			s[i] = cell(v)
		}
		fmt.Fprintln(tw, strings.Join(s, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if meta != nil && meta.Count > len(rows) {
		fmt.Fprintf(c.out, "(%d of %d; page %d, --page and --limit for more)\n", len(rows), meta.Count, meta.Page)
	}
	return nil
}

// cell is a table value: "-" for an empty one.
func cell(v any) string {
	if s := fmt.Sprint(v); s != "" {
		return s
	}
	return "-"
}

type ctlMeta struct{ Page, Limit, Count int }

type ctlClientRow struct {
	ClientID       string     `json:"client_id"`
	Username       string     `json:"username"`
	Node           string     `json:"node"`
	Connected      bool       `json:"connected"`
	Address        string     `json:"address"`
	ProtoVersion   int        `json:"proto_version"`
	Persistent     bool       `json:"persistent"`
	Expiry         int64      `json:"session_expiry_seconds"`
	DisconnectedAt *time.Time `json:"disconnected_at"`
	Subscriptions  int        `json:"subscriptions"`
	Inflight       int        `json:"inflight"`
	Queued         int        `json:"queued"`
}

func (c *ctlClient) clients(path string) error {
	var page struct {
		Data []ctlClientRow
		Meta ctlMeta
	}
	q := c.query("client_id", c.o.clientID, "username", c.o.user, "address", c.o.addr, "connected", c.o.connected)
	if err := c.call("GET", path+q, nil, &page); err != nil || c.o.json {
		return err
	}
	var rows [][]any
	for _, x := range page.Data {
		state := "connected"
		if !x.Connected {
			state = "offline"
		}
		rows = append(rows, []any{x.ClientID, x.Username, state, x.Address, x.ProtoVersion, x.Subscriptions, x.Inflight, x.Queued, x.Node})
	}
	return c.table("CLIENT ID\tUSERNAME\tSTATE\tADDRESS\tPROTO\tSUBS\tINFLIGHT\tQUEUED\tNODE", rows, &page.Meta)
}

type ctlSubRow struct {
	ClientID string `json:"client_id"`
	Topic    string `json:"topic"`
	Group    string `json:"share_group"`
	QoS      int    `json:"qos"`
	NoLocal  bool   `json:"no_local"`
	Node     string `json:"node"`
}

func (c *ctlClient) client(id string) error {
	var x struct {
		ctlClientRow
		Owner         string      `json:"owner"`
		Listener      string      `json:"listener"`
		InflightMax   int         `json:"inflight_max"`
		QueuedBytes   int         `json:"queued_bytes"`
		QueueMax      int         `json:"queue_max"`
		QueueMaxBytes int         `json:"queue_max_bytes"`
		Subs          []ctlSubRow `json:"subscription_list"`
	}
	if err := c.call("GET", "/api/v1/clients/"+url.PathEscape(id), nil, &x); err != nil || c.o.json {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	disc := "-"
	if x.DisconnectedAt != nil {
		disc = x.DisconnectedAt.Format(time.RFC3339)
	}
	for _, kv := range [][2]any{{"client id", x.ClientID}, {"username", x.Username}, {"owner", x.Owner}, {"node", x.Node},
		{"connected", x.Connected}, {"address", x.Address}, {"listener", x.Listener}, {"protocol", x.ProtoVersion},
		{"persistent", x.Persistent}, {"session expiry", time.Duration(x.Expiry) * time.Second}, {"disconnected at", disc},
		{"inflight", fmt.Sprintf("%d of %d", x.Inflight, x.InflightMax)},
		{"queued", fmt.Sprintf("%d of %d (%d of %d bytes)", x.Queued, x.QueueMax, x.QueuedBytes, x.QueueMaxBytes)}} {
		fmt.Fprintf(tw, "%v:\t%s\n", kv[0], cell(kv[1]))
	}
	tw.Flush()
	fmt.Fprintln(c.out)
	var rows [][]any
	for _, s := range x.Subs {
		rows = append(rows, []any{s.Topic, s.Group, s.QoS, s.NoLocal})
	}
	return c.table("SUBSCRIPTION\tSHARE GROUP\tQOS\tNO LOCAL", rows, nil)
}

func (c *ctlClient) subscriptions() error {
	var page struct {
		Data []ctlSubRow
		Meta ctlMeta
	}
	if err := c.call("GET", "/api/v1/subscriptions"+c.query("client_id", c.o.clientID, "topic", c.o.topic), nil, &page); err != nil || c.o.json {
		return err
	}
	var rows [][]any
	for _, s := range page.Data {
		rows = append(rows, []any{s.ClientID, s.Topic, s.Group, s.QoS, s.Node})
	}
	return c.table("CLIENT ID\tTOPIC\tSHARE GROUP\tQOS\tNODE", rows, &page.Meta)
}

func (c *ctlClient) topics() error {
	var page struct {
		Data []struct {
			Topic       string
			Subscribers int
			Node        string
		}
		Meta ctlMeta
	}
	if err := c.call("GET", "/api/v1/topics"+c.query("topic", c.o.topic), nil, &page); err != nil || c.o.json {
		return err
	}
	var rows [][]any
	for _, t := range page.Data {
		rows = append(rows, []any{t.Topic, t.Subscribers, t.Node})
	}
	return c.table("TOPIC\tSUBSCRIBERS\tNODE", rows, &page.Meta)
}

type ctlRetained struct {
	Topic       string     `json:"topic"`
	QoS         int        `json:"qos"`
	PayloadSize int        `json:"payload_size"`
	PayloadText *string    `json:"payload_text"`
	Payload     []byte     `json:"payload"`
	From        string     `json:"from_client_id"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

func (c *ctlClient) retainedList() error {
	var page struct {
		Data []ctlRetained
		Meta ctlMeta
	}
	if err := c.call("GET", "/api/v1/retained"+c.query("topic", c.o.topic), nil, &page); err != nil || c.o.json {
		return err
	}
	var rows [][]any
	for _, r := range page.Data {
		rows = append(rows, []any{r.Topic, r.QoS, r.PayloadSize, r.From})
	}
	return c.table("TOPIC\tQOS\tBYTES\tFROM", rows, &page.Meta)
}

func (c *ctlClient) retainedShow(t string) error {
	var r ctlRetained
	if err := c.call("GET", "/api/v1/retained-message?topic="+url.QueryEscape(t), nil, &r); err != nil || c.o.json {
		return err
	}
	payload := fmt.Sprintf("(%d bytes of binary; --json shows them in base64)", r.PayloadSize)
	if r.PayloadText != nil {
		payload = *r.PayloadText
	}
	fmt.Fprintf(c.out, "topic:   %s\nqos:     %d\nfrom:    %s\npayload: %s\n", r.Topic, r.QoS, r.From, payload)
	return nil
}

func (c *ctlClient) bans() error {
	var list []struct {
		Kind, Value, Source, Reason string
		Until                       *time.Time
	}
	if err := c.call("GET", "/api/v1/bans", nil, &list); err != nil || c.o.json {
		return err
	}
	var rows [][]any
	for _, b := range list {
		until := "lifted by hand"
		if b.Until != nil {
			until = b.Until.Format(time.RFC3339)
		}
		rows = append(rows, []any{b.Kind, b.Value, b.Source, until, b.Reason})
	}
	return c.table("KIND\tVALUE\tSOURCE\tUNTIL\tREASON", rows, nil)
}

func (c *ctlClient) users(w []string, sub string, stdin io.Reader) error {
	switch sub {
	case "", "list":
		var list []struct {
			Username, Hash   string
			Superuser, SCRAM bool
		}
		if err := c.call("GET", "/api/v1/users", nil, &list); err != nil || c.o.json {
			return err
		}
		var rows [][]any
		for _, u := range list {
			rows = append(rows, []any{u.Username, u.Hash, u.Superuser, u.SCRAM})
		}
		return c.table("NAME\tHASH\tSUPERUSER\tSCRAM", rows, nil)
	case "add", "passwd":
		if err := want(w, 3, "users "+sub+" NAME (password on stdin)"); err != nil {
			return err
		}
		pw, err := readPassword(stdin, c.errOut) // a prompt without echo on a terminal
		if err != nil {
			return fmt.Errorf("ctl: %w", err)
		}
		if sub == "add" {
			body := map[string]any{"username": w[2], "password": pw, "superuser": c.o.superuser}
			return c.done(c.call("POST", "/api/v1/users", body, nil), "added %s", w[2])
		}
		return c.done(c.call("PUT", "/api/v1/users/"+url.PathEscape(w[2]), map[string]any{"password": pw}, nil), "changed the password of %s", w[2])
	case "delete", "rm":
		if err := want(w, 3, "users delete NAME"); err != nil {
			return err
		}
		return c.done(c.call("DELETE", "/api/v1/users/"+url.PathEscape(w[2]), nil, nil), "removed %s", w[2])
	}
	return fmt.Errorf("ctl: unknown command \"users %s\"", sub)
}

func (c *ctlClient) acl(method, path string) error {
	var a struct {
		File, Default string
		Rules         []struct{ Permission, Action, Topic, Scope, Name string }
	}
	if err := c.call(method, path, nil, &a); err != nil || c.o.json {
		return err
	}
	fmt.Fprintf(c.out, "file: %s\ndefault: %s\n\n", a.File, a.Default)
	var rows [][]any
	for _, r := range a.Rules {
		scope := r.Scope
		if r.Name != "" {
			scope += " " + r.Name
		}
		rows = append(rows, []any{scope, r.Permission, r.Action, r.Topic})
	}
	return c.table("SCOPE\tPERMISSION\tACTION\tTOPIC", rows, nil)
}

func (c *ctlClient) routes() error {
	var k struct {
		Enabled bool
		Routes  []struct {
			Name, Filter, Topic, Ack  string
			Produced, Failed, Expired int64
			ProducedRate              float64 `json:"produced_per_second"`
			InFlight                  int64   `json:"in_flight"`
			AckedNotInKafka           int64   `json:"acked_not_in_kafka"`
			SpoolBytes                int64   `json:"spool_bytes"`
			SpoolAge                  float64 `json:"spool_oldest_age_seconds"`
		}
		Commands []struct {
			Name                                    string
			Consumed, Published, Invalid, Committed int64
			Undeliverable                           int64
		}
		Spool struct {
			Entries    int64
			Bytes      int64
			Held       int64
			HeldTopics []string `json:"held_topics"`
		}
	}
	if err := c.call("GET", "/api/v1/kafka", nil, &k); err != nil || c.o.json {
		return err
	}
	if !k.Enabled {
		fmt.Fprintln(c.out, "the Kafka bridge is off (kafka.brokers is empty)")
		return nil
	}
	var rows [][]any
	for _, r := range k.Routes {
		rows = append(rows, []any{r.Name, r.Filter, r.Topic, r.Ack, fmt.Sprintf("%.1f", r.ProducedRate), r.Produced, r.Failed, r.Expired,
			r.InFlight, r.AckedNotInKafka, r.SpoolBytes})
	}
	if err := c.table("ROUTE\tFILTER\tKAFKA TOPIC\tACK\tRECORDS/S\tPRODUCED\tFAILED\tEXPIRED\tIN FLIGHT\tACKED NOT IN KAFKA\tSPOOL BYTES", rows, nil); err != nil {
		return err
	}
	if len(k.Commands) > 0 {
		fmt.Fprintln(c.out)
		rows = nil
		for _, x := range k.Commands {
			rows = append(rows, []any{x.Name, x.Consumed, x.Published, x.Invalid, x.Committed, x.Undeliverable})
		}
		if err := c.table("COMMAND ROUTE\tCONSUMED\tPUBLISHED\tINVALID\tCOMMITTED\tUNDELIVERABLE", rows, nil); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.out, "\nspool: %d entries, %d bytes; held: %d", k.Spool.Entries, k.Spool.Bytes, k.Spool.Held)
	if len(k.Spool.HeldTopics) > 0 {
		fmt.Fprintf(c.out, " (Kafka topics %s)", strings.Join(k.Spool.HeldTopics, ", "))
	}
	fmt.Fprintln(c.out)
	return nil
}

func (c *ctlClient) nodes() error {
	var list []struct {
		Name, Version, Status                string
		Uptime                               int64 `json:"uptime_seconds"`
		Connections, Sessions, Subscriptions int64
		Listeners                            []string
		Role, Address, Ready                 string
		MetaLeader                           string `json:"meta_leader"`
	}
	if err := c.call("GET", "/api/v1/nodes", nil, &list); err != nil || c.o.json {
		return err
	}
	var rows [][]any
	leader := ""
	for _, n := range list {
		rows = append(rows, []any{n.Name, n.Status, cmp.Or(n.Role, "-"), cmp.Or(n.Ready, "-"), n.Version, time.Duration(n.Uptime) * time.Second,
			n.Connections, n.Sessions, n.Subscriptions, cmp.Or(n.Address, "-"), strings.Join(n.Listeners, " ")})
		leader = cmp.Or(leader, n.MetaLeader)
	}
	if err := c.table("NODE\tSTATUS\tROLE\tREADY\tVERSION\tUPTIME\tCONNECTIONS\tSESSIONS\tSUBSCRIPTIONS\tCLUSTER ADDRESS\tLISTENERS", rows, nil); err != nil {
		return err
	}
	if leader != "" {
		fmt.Fprintf(c.out, "leading core (JetStream meta leader): %s\n", leader)
	}
	return nil
}

func (c *ctlClient) stats() error {
	var m map[string]any
	if err := c.call("GET", "/api/v1/stats", nil, &m); err != nil || c.o.json {
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(tw, "%s:\t%v\n", k, m[k])
	}
	return tw.Flush()
}
