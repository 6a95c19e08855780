package kafka

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Header names of the MQTT metadata on a record. User properties follow
// under their own names, in order, after these, except those whose name
// starts with ReservedPrefix: the prefix is the broker's, so that a
// consumer can trust every mqtt.* header, and a device's property there is
// dropped (and counted in RouteStats.ReservedDropped).
const (
	ReservedPrefix        = "mqtt."
	HeaderTopic           = "mqtt.topic"
	HeaderClientID        = "mqtt.client_id"
	HeaderUsername        = "mqtt.username"
	HeaderQoS             = "mqtt.qos"
	HeaderRetain          = "mqtt.retain"
	HeaderContentType     = "mqtt.content_type"
	HeaderCorrelationData = "mqtt.correlation_data"
	HeaderResponseTopic   = "mqtt.response_topic"
	HeaderPayloadFormat   = "mqtt.payload_format"
)

// envelope is the JSON payload of a route with payload: json.
type envelope struct {
	Topic           string      `json:"topic"`
	ClientID        string      `json:"client_id"`
	Username        string      `json:"username,omitempty"`
	QoS             byte        `json:"qos"`
	Retain          bool        `json:"retain"`
	ContentType     string      `json:"content_type,omitempty"`
	ResponseTopic   string      `json:"response_topic,omitempty"`
	CorrelationData []byte      `json:"correlation_data,omitempty"` // base64
	UserProperties  [][2]string `json:"user_properties,omitempty"`
	TimestampMs     int64       `json:"timestamp_ms"`
	// Encoding is utf8 when Payload is the payload as text, base64 otherwise.
	Encoding string `json:"encoding"`
	Payload  string `json:"payload"`
}

// record maps one MQTT message to the route's Kafka record. user is the
// client's authenticated identity (Bridge.username); received is when the
// broker got the message (the record timestamp).
func (r *route) record(c *broker.ClientInfo, user string, m *broker.Message, received time.Time) (*kgo.Record, error) {
	v := vars{topic: m.Topic, clientID: c.ClientID, username: user}
	t, err := r.topic.render(&v)
	if err != nil {
		return nil, err
	}
	if err := validKafkaTopic(t); err != nil {
		return nil, err
	}
	key, err := r.key.render(&v)
	if err != nil {
		return nil, err
	}
	if r.keyDefault && c.ClientID == "" {
		key = m.Topic
	}
	rec := &kgo.Record{Topic: t, Timestamp: received}
	if key != "" {
		rec.Key = []byte(key)
	}
	if r.json {
		rec.Value, err = json.Marshal(newEnvelope(c, user, m, received))
		if err != nil {
			return nil, err
		}
	} else {
		rec.Value = m.Payload
	}
	if r.headers {
		var dropped int64
		rec.Headers, dropped = headers(c, user, m)
		if dropped > 0 {
			r.stats.ReservedDropped.Add(dropped)
		}
	}
	return rec, nil
}

func has(p *packet.Properties, id packet.PropID) bool { return p.Present&(1<<id) != 0 }

// reserved reports whether a user property's name is in the broker's
// header namespace; case is ignored, for consumers that ignore it.
func reserved(name string) bool {
	return len(name) >= len(ReservedPrefix) && strings.EqualFold(name[:len(ReservedPrefix)], ReservedPrefix)
}

// headers are the MQTT metadata as record headers, and how many user
// properties were dropped for a reserved name.
func headers(c *broker.ClientInfo, user string, m *broker.Message) (hs []kgo.RecordHeader, dropped int64) {
	p := m.Properties()
	hs = make([]kgo.RecordHeader, 0, 5+len(p.User))
	add := func(k string, v []byte) { hs = append(hs, kgo.RecordHeader{Key: k, Value: v}) }
	add(HeaderTopic, []byte(m.Topic))
	if c.ClientID != "" {
		add(HeaderClientID, []byte(c.ClientID))
	}
	if user != "" {
		add(HeaderUsername, []byte(user))
	}
	add(HeaderQoS, []byte{'0' + m.QoS})
	add(HeaderRetain, []byte(strconv.FormatBool(m.Retain)))
	if has(p, packet.PropPayloadFormat) {
		add(HeaderPayloadFormat, []byte{'0' + p.PayloadFormat})
	}
	if has(p, packet.PropContentType) {
		add(HeaderContentType, []byte(p.ContentType))
	}
	if has(p, packet.PropResponseTopic) {
		add(HeaderResponseTopic, []byte(p.ResponseTopic))
	}
	if has(p, packet.PropCorrelationData) {
		add(HeaderCorrelationData, p.CorrelationData)
	}
	for _, u := range p.User {
		if reserved(u.Key) {
			dropped++
			continue
		}
		add(u.Key, []byte(u.Value))
	}
	return hs, dropped
}

func newEnvelope(c *broker.ClientInfo, user string, m *broker.Message, received time.Time) *envelope {
	p := m.Properties()
	e := &envelope{
		Topic: m.Topic, ClientID: c.ClientID, Username: user,
		QoS: m.QoS, Retain: m.Retain, TimestampMs: received.UnixMilli(),
	}
	if has(p, packet.PropContentType) {
		e.ContentType = p.ContentType
	}
	if has(p, packet.PropResponseTopic) {
		e.ResponseTopic = p.ResponseTopic
	}
	if has(p, packet.PropCorrelationData) {
		e.CorrelationData = p.CorrelationData
	}
	for _, u := range p.User {
		e.UserProperties = append(e.UserProperties, [2]string{u.Key, u.Value})
	}
	if utf8.Valid(m.Payload) {
		e.Encoding, e.Payload = "utf8", string(m.Payload)
	} else {
		e.Encoding, e.Payload = "base64", base64.StdEncoding.EncodeToString(m.Payload)
	}
	return e
}
