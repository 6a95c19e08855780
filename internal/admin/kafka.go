package admin

import (
	"net/http"
	"time"

	"github.com/culexmq/culex/internal/bridge/kafka"
)

type kafkaRouteJSON struct {
	Name            string  `json:"name"`
	Filter          string  `json:"filter"`
	Topic           string  `json:"topic"`
	Ack             string  `json:"ack"`
	Matched         int64   `json:"matched"`
	Produced        int64   `json:"produced"`
	Failed          int64   `json:"failed"`
	Expired         int64   `json:"expired"`
	InFlight        int64   `json:"in_flight"`
	AckedNotInKafka int64   `json:"acked_not_in_kafka"`
	SpoolBytes      int64   `json:"spool_bytes"`
	SpoolAge        float64 `json:"spool_oldest_age_seconds"`
	ProducedRate    float64 `json:"produced_per_second"`
	FailedRate      float64 `json:"failed_per_second"`
}

type kafkaCommandJSON struct {
	Name          string `json:"name"`
	Consumed      int64  `json:"consumed"`
	Published     int64  `json:"published"`
	Invalid       int64  `json:"invalid"`
	Committed     int64  `json:"committed"`
	Stalled       int64  `json:"stalled"`
	Stalls        int64  `json:"stalls"`
	Undeliverable int64  `json:"undeliverable"`
}

type kafkaSpoolJSON struct {
	Entries    uint64   `json:"entries"`
	Bytes      int64    `json:"bytes"`
	OldestAge  float64  `json:"oldest_age_seconds"`
	Held       int64    `json:"held"`
	HeldAge    float64  `json:"held_age_seconds"`
	HeldTopics []string `json:"held_topics"`
}

type kafkaJSON struct {
	Enabled  bool               `json:"enabled"`
	Brokers  string             `json:"brokers"`
	Routes   []kafkaRouteJSON   `json:"routes"`
	Commands []kafkaCommandJSON `json:"commands"`
	Spool    kafkaSpoolJSON     `json:"spool"`
}

func (s *Server) getKafka(w http.ResponseWriter, r *http.Request) error {
	k := s.opts.Kafka
	j := kafkaJSON{Enabled: k != nil, Routes: []kafkaRouteJSON{}, Commands: []kafkaCommandJSON{}, Spool: kafkaSpoolJSON{HeldTopics: []string{}}}
	if k == nil {
		return writeJSON(w, http.StatusOK, j)
	}
	cfg := s.opts.Config.Kafka
	j.Brokers = cfg.Brokers
	for i, x := range k.Stats() {
		rj := kafkaRouteJSON{Name: x.Name, Matched: x.Matched, Produced: x.Produced, Failed: x.Failed, Expired: x.Expired,
			InFlight: x.InFlight, AckedNotInKafka: x.AckedNotInKafka, SpoolBytes: x.SpoolBytes, SpoolAge: x.SpoolAge.Seconds(),
			ProducedRate: s.rates.get(routeKey(i) + "produced"), FailedRate: s.rates.get(routeKey(i) + "failed")}
		if i < len(cfg.Routes) {
			c := cfg.Routes[i]
			rj.Filter, rj.Topic, rj.Ack = c.Filter, c.Topic, c.Ack
			if rj.Ack == "" {
				rj.Ack = "kafka"
			}
		}
		j.Routes = append(j.Routes, rj)
	}
	for _, c := range k.CommandStats() {
		j.Commands = append(j.Commands, kafkaCommandJSON{Name: c.Name, Consumed: c.Consumed, Published: c.Published,
			Invalid: c.Invalid, Committed: c.Committed, Stalled: c.Stalled, Stalls: c.Stalls, Undeliverable: c.Undeliverable})
	}
	sp := k.SpoolStats()
	j.Spool = kafkaSpoolJSON{Entries: sp.Entries, Bytes: sp.Bytes, OldestAge: sp.OldestAge.Seconds(), Held: sp.Stuck,
		HeldAge: sp.StuckAge.Seconds(), HeldTopics: append([]string{}, sp.StuckTopics...)}
	return writeJSON(w, http.StatusOK, j)
}

type heldJSON struct {
	Seq      uint64    `json:"seq"`
	Topic    string    `json:"topic"`
	Route    string    `json:"route"`
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	Since    time.Time `json:"held_since"`
	Retrying bool      `json:"retrying"`
}

func (s *Server) listHeld(w http.ResponseWriter, r *http.Request) error {
	var list []kafka.HeldRecord
	if s.opts.Kafka != nil {
		list = s.opts.Kafka.Held()
	}
	if t := r.URL.Query().Get("topic"); t != "" {
		var keep []kafka.HeldRecord
		for _, h := range list {
			if h.Topic == t {
				keep = append(keep, h)
			}
		}
		list = keep
	}
	return writePage(w, r, list, func(h *kafka.HeldRecord) heldJSON {
		return heldJSON{Seq: h.Seq, Topic: h.Topic, Route: h.Route, Key: string(h.Key), Size: h.Size, Since: h.Since.UTC(), Retrying: h.Retrying}
	})
}

func (s *Server) retryHeld(w http.ResponseWriter, r *http.Request) error {
	t := r.PathValue("topic")
	if s.opts.Kafka == nil || !s.opts.Kafka.RetryHeld(t) {
		return notFound("no held records for Kafka topic %q", t)
	}
	s.log.Info("admin: held Kafka records retried", "topic", t, "by", caller(r).name)
	return noContent(w)
}

func (s *Server) dropHeld(w http.ResponseWriter, r *http.Request) error {
	t := r.PathValue("topic")
	if s.opts.Kafka == nil {
		return notFound("no held records for Kafka topic %q", t)
	}
	n, ok := s.opts.Kafka.DropHeld(t)
	if !ok {
		return notFound("no held records for Kafka topic %q", t)
	}
	s.log.Warn("admin: held Kafka records dropped", "topic", t, "dropped", n, "by", caller(r).name)
	return writeJSON(w, http.StatusOK, map[string]int{"dropped": n})
}
