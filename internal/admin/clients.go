package admin

import (
	"net/http"
	"strings"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

type clientJSON struct {
	ClientID       string     `json:"client_id"`
	Username       string     `json:"username"`
	Node           string     `json:"node"`
	Connected      bool       `json:"connected"`
	Address        string     `json:"address"`
	Listener       string     `json:"listener"`
	ProtoVersion   byte       `json:"proto_version"`
	Persistent     bool       `json:"persistent"`
	Expiry         uint32     `json:"session_expiry_seconds"`
	DisconnectedAt *time.Time `json:"disconnected_at"`
	Subscriptions  int        `json:"subscriptions"`
	Inflight       int        `json:"inflight"`
	Queued         int        `json:"queued"`
}

type clientDetailJSON struct {
	clientJSON
	Owner         string             `json:"owner"`
	InflightMax   int                `json:"inflight_max"`
	QueuedBytes   int                `json:"queued_bytes"`
	QueueMax      int                `json:"queue_max"`
	QueueMaxBytes int                `json:"queue_max_bytes"`
	Subs          []subscriptionJSON `json:"subscription_list"`
}

type subscriptionJSON struct {
	ClientID string `json:"client_id"`
	Node     string `json:"node"`
	Topic    string `json:"topic"`
	Group    string `json:"share_group,omitempty"`
	QoS      byte   `json:"qos"`
	NoLocal  bool   `json:"no_local"`
	RAP      bool   `json:"retain_as_published"`
	RH       byte   `json:"retain_handling"`
	ID       uint32 `json:"subscription_id,omitempty"`
}

func (s *Server) clientOut(c *broker.ClientSnapshot) clientJSON {
	j := clientJSON{ClientID: c.ClientID, Username: c.Username, Node: s.node, Connected: c.Connected, Address: c.Remote,
		Listener: c.Listener, ProtoVersion: c.Version, Persistent: c.Persistent, Expiry: c.Expiry,
		Subscriptions: c.Subs, Inflight: c.Inflight, Queued: c.Queued}
	if !c.DiscAt.IsZero() {
		t := c.DiscAt.UTC()
		j.DisconnectedAt = &t
	}
	return j
}

func (s *Server) subOut(x *broker.SubscriptionSnapshot) subscriptionJSON {
	return subscriptionJSON{ClientID: x.ClientID, Node: s.node, Topic: x.Filter, Group: x.Group, QoS: x.QoS,
		NoLocal: x.NoLocal, RAP: x.RAP, RH: x.RH, ID: x.ID}
}

// clientFilter reads the filters of GET /clients and /sessions.
func (s *Server) clientFilter(r *http.Request, persistentOnly bool) (func(*broker.ClientSnapshot) bool, error) {
	q := r.URL.Query()
	id, user, addr, node := q.Get("client_id"), q.Get("username"), q.Get("address"), q.Get("node")
	conn, connSet, err := boolParam(r, "connected")
	if err != nil {
		return nil, err
	}
	return func(c *broker.ClientSnapshot) bool {
		return (!persistentOnly || c.Persistent) && strings.Contains(c.ClientID, id) && strings.Contains(c.Username, user) &&
			strings.Contains(c.Remote, addr) && (node == "" || node == s.node) && (!connSet || c.Connected == conn)
	}, nil
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) error {
	return s.clients(w, r, false)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	return s.clients(w, r, true)
}

func (s *Server) clients(w http.ResponseWriter, r *http.Request, persistentOnly bool) error {
	local, err := s.localClients(r, persistentOnly)
	if err != nil {
		return err
	}
	all, count, missing, err := s.clusterClients(r, persistentOnly, local)
	if err != nil {
		return err
	}
	return writePageOf(w, r, all, func(c *clientJSON) clientJSON { return *c }, count, missing)
}

// localClients lists this node's clients matching r's filters.
func (s *Server) localClients(r *http.Request, persistentOnly bool) ([]clientJSON, error) {
	keep, err := s.clientFilter(r, persistentOnly)
	if err != nil {
		return nil, err
	}
	cs := s.opts.Broker.Clients(keep)
	out := make([]clientJSON, len(cs))
	for i := range cs {
		out[i] = s.clientOut(&cs[i])
	}
	return out, nil
}

func (s *Server) getClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("client_id")
	if j, ok := s.localClient(id); ok {
		return writeJSON(w, http.StatusOK, j)
	}
	j, missing := s.remoteClient(r, id)
	if j != nil {
		return writeJSON(w, http.StatusOK, j)
	}
	return notFound("no client %q%s", id, unanswered(missing))
}

// localClient is one client of this node.
func (s *Server) localClient(id string) (clientDetailJSON, bool) {
	c, ok := s.opts.Broker.Client(id)
	if !ok {
		return clientDetailJSON{}, false
	}
	j := clientDetailJSON{clientJSON: s.clientOut(&c), Owner: c.Owner, InflightMax: c.InflightMax, QueuedBytes: c.QueuedBytes,
		QueueMax: c.QueueMax, QueueMaxBytes: c.QueueMaxBytes, Subs: []subscriptionJSON{}}
	for i := range c.Subscriptions {
		j.Subs = append(j.Subs, s.subOut(&c.Subscriptions[i]))
	}
	return j, true
}

func (s *Server) kickClient(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("client_id")
	if s.kickLocal(id, caller(r).name) {
		return noContent(w)
	}
	if ok, missing := s.remoteKick(r, id); !ok {
		return notFound("client %q is not connected%s", id, unanswered(missing))
	}
	return noContent(w)
}

// kickLocal disconnects a client connected to this node.
func (s *Server) kickLocal(id, by string) bool {
	if !s.opts.Broker.Disconnect(id, packet.ErrAdministrativeAction) {
		return false
	}
	s.log.Info("admin: client kicked", "client_id", id, "by", by)
	return true
}

// unanswered says which nodes did not answer, for an error message.
func unanswered(nodes []string) string {
	if len(nodes) == 0 {
		return ""
	}
	return " (no answer from " + strings.Join(nodes, ", ") + ")"
}

type topicJSON struct {
	Topic       string `json:"topic"`
	Subscribers int    `json:"subscribers"`
	Node        string `json:"node"`
}
