package kafka

import (
	"fmt"

	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

// Ack modes of a route.
const (
	// AckKafka acknowledges a QoS 1/2 publish once Kafka acked its records.
	AckKafka = "kafka"
	// AckSpool acknowledges once the record is fsynced in the disk spool.
	AckSpool = "spool"
	// AckNone acknowledges at once; records are produced best effort.
	AckNone = "none"
)

// Payload encodings of a route.
const (
	PayloadRaw  = "raw"
	PayloadJSON = "json"
)

// route is a compiled config.KafkaRoute.
type route struct {
	name   string
	idx    int // position in config, recorded in spool entries
	filter string
	topic  template
	key    template
	// keyDefault: no key configured. The key is then the client id, or the
	// MQTT topic when the publisher is unknown (standalone mode).
	keyDefault bool
	json       bool
	headers    bool
	ack        string
	stats      *RouteStats
}

// compileRoute validates r and fills its defaults.
func compileRoute(r config.KafkaRoute) (*route, error) {
	name := r.Name
	if name == "" {
		name = r.Filter
	}
	fail := func(err error) (*route, error) { return nil, fmt.Errorf("kafka route %q: %w", name, err) }
	if err := topic.ValidFilter(r.Filter, 0); err != nil {
		return fail(fmt.Errorf("filter %q: %w", r.Filter, err))
	}
	if _, _, shared, _ := topic.ParseShared(r.Filter); shared {
		return fail(fmt.Errorf("filter %q: shared subscriptions are for `culex bridge`, not routes", r.Filter))
	}
	if r.Topic == "" {
		return fail(fmt.Errorf("topic is required"))
	}
	tt, err := parseTemplate(r.Topic, mqttVars)
	if err != nil {
		return fail(err)
	}
	if s, ok := tt.literal(); ok {
		if err := validKafkaTopic(s); err != nil {
			return fail(err)
		}
	}
	keySrc := r.Key
	if keySrc == "" {
		keySrc = "${clientid}"
	}
	kt, err := parseTemplate(keySrc, mqttVars)
	if err != nil {
		return fail(err)
	}
	rt := &route{name: name, filter: r.Filter, topic: tt, key: kt, keyDefault: r.Key == "", headers: r.Headers, stats: &RouteStats{Name: name}}
	switch r.Payload {
	case "", PayloadRaw:
	case PayloadJSON:
		rt.json = true
	default:
		return fail(fmt.Errorf("payload %q: want raw or json", r.Payload))
	}
	switch r.Ack {
	case "", AckKafka:
		rt.ack = AckKafka
	case AckNone:
		rt.ack = AckNone
	case AckSpool:
		rt.ack = AckSpool
	default:
		return fail(fmt.Errorf("ack %q: want kafka, spool or none", r.Ack))
	}
	return rt, nil
}

// routes matches MQTT topics against the compiled routes.
type routes struct {
	list  []*route
	index *topic.Index[*route, struct{}]
}

// compileRoutes compiles every route; names must be unique.
func compileRoutes(cfg []config.KafkaRoute) (*routes, error) {
	rs := &routes{index: topic.NewIndex[*route, struct{}]()}
	seen := make(map[string]bool)
	for _, c := range cfg {
		r, err := compileRoute(c)
		if err != nil {
			return nil, err
		}
		if seen[r.name] {
			return nil, fmt.Errorf("kafka route %q: duplicate name", r.name)
		}
		seen[r.name] = true
		r.idx = len(rs.list)
		rs.list = append(rs.list, r)
		rs.index.Subscribe(r.filter, r, struct{}{})
	}
	return rs, nil
}

// match appends the routes whose filter matches t to dst, in config order
// (so that records of one message are produced in a stable order).
func (rs *routes) match(dst []*route, t string) []*route {
	n := len(dst)
	rs.index.Match(t, func(_ string, r *route, _ struct{}) {
		for _, x := range dst[n:] {
			if x == r {
				return
			}
		}
		dst = append(dst, r)
	})
	m := dst[n:]
	// Insertion sort by config position: matches are few.
	pos := func(r *route) int {
		for i, x := range rs.list {
			if x == r {
				return i
			}
		}
		return 0
	}
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && pos(m[j]) < pos(m[j-1]); j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
	return dst
}
