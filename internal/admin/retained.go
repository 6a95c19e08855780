package admin

import (
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

type retainedJSON struct {
	Topic       string     `json:"topic"`
	QoS         byte       `json:"qos"`
	PayloadSize int        `json:"payload_size"`
	Payload     []byte     `json:"payload,omitempty"`
	PayloadText *string    `json:"payload_text,omitempty"`
	ContentType string     `json:"content_type,omitempty"`
	From        string     `json:"from_client_id"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

func retainedOut(t string, m *broker.Message, full bool) retainedJSON {
	j := retainedJSON{Topic: t, QoS: m.QoS, PayloadSize: len(m.Payload), ContentType: m.Properties().ContentType, From: m.Origin}
	if m.Expiry != 0 {
		e := time.Unix(0, m.Expiry).UTC()
		j.ExpiresAt = &e
	}
	if full {
		j.Payload = m.Payload
		if utf8.Valid(m.Payload) {
			s := string(m.Payload)
			j.PayloadText = &s
		}
	}
	return j
}

// maxFilterLevels bounds the filters the API walks the retained tree with.
const maxFilterLevels = 64

func (s *Server) listRetained(w http.ResponseWriter, r *http.Request) error {
	f := r.URL.Query().Get("topic")
	if f == "" {
		f = "#"
	}
	if err := topic.ValidFilter(f, maxFilterLevels); err != nil {
		return badRequest("topic %q: %v", f, err)
	}
	list := s.opts.Broker.RetainedMatching(f)
	return writePage(w, r, list, func(x *broker.RetainedSnapshot) retainedJSON { return retainedOut(x.Topic, x.Message, false) })
}

// retainedTopic is the topic of a request for one retained message: the
// path segment of /api/v1/retained/{topic}, or the topic query parameter
// of /api/v1/retained-message, which also reaches the topics "." and ".."
// that a path cannot hold (the router cleans them away).
func retainedTopic(r *http.Request) (string, error) {
	if t := r.PathValue("topic"); t != "" {
		return t, nil
	}
	t := r.URL.Query().Get("topic")
	if err := topic.ValidName(t, maxFilterLevels); err != nil {
		return "", badRequest("topic %q: %v", t, err)
	}
	return t, nil
}

func (s *Server) getRetained(w http.ResponseWriter, r *http.Request) error {
	t, err := retainedTopic(r)
	if err != nil {
		return err
	}
	m, ok := s.opts.Broker.Retained(t)
	if !ok {
		return notFound("no retained message on %q", t)
	}
	return writeJSON(w, http.StatusOK, retainedOut(t, m, true))
}

func (s *Server) deleteRetained(w http.ResponseWriter, r *http.Request) error {
	t, err := retainedTopic(r)
	if err != nil {
		return err
	}
	if topic.IsSys(t) {
		return badRequest("$SYS values are the node's own")
	}
	if !s.opts.Broker.DeleteRetained(t) {
		return notFound("no retained message on %q", t)
	}
	s.log.Info("admin: retained message deleted", "topic", t, "by", caller(r).name)
	return noContent(w)
}
