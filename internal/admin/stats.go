package admin

import (
	"net/http"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/culexmq/culex/internal/config"
)

type authStatsJSON struct {
	Success   int64 `json:"success"`
	Anonymous int64 `json:"anonymous"`
	Failure   int64 `json:"failure"`
	Banned    int64 `json:"banned"`
	Denied    int64 `json:"denied"`
}

type statsJSON struct {
	Node               string            `json:"node"`
	Uptime             int64             `json:"uptime_seconds"`
	Connects           uint64            `json:"connects"`
	Disconnects        uint64            `json:"disconnects"`
	ClientsConnected   int64             `json:"clients_connected"`
	Sessions           int64             `json:"sessions"`
	PersistentSessions int64             `json:"persistent_sessions"`
	PublishesIn        uint64            `json:"publishes_in"`
	PublishesOut       uint64            `json:"publishes_out"`
	BytesIn            uint64            `json:"bytes_in"`
	BytesOut           uint64            `json:"bytes_out"`
	Subscriptions      int64             `json:"subscriptions"`
	Retained           int64             `json:"retained"`
	Drops              map[string]uint64 `json:"drops"`
	TakeoverRefused    uint64            `json:"takeover_refused"`
	BindingRefused     uint64            `json:"binding_refused"`
	SessionsRefused    uint64            `json:"sessions_refused"`
	RetainedRefused    uint64            `json:"retained_refused"`
	Auth               authStatsJSON     `json:"auth"`
	// Rates per second over the last rateEvery.
	PublishesInRate  float64 `json:"publishes_in_per_second"`
	PublishesOutRate float64 `json:"publishes_out_per_second"`
	BytesInRate      float64 `json:"bytes_in_per_second"`
	BytesOutRate     float64 `json:"bytes_out_per_second"`
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) error {
	b := s.opts.Broker
	st := b.Stats()
	as := s.opts.Auth.Stats()
	return writeJSON(w, http.StatusOK, statsJSON{
		Node: s.node, Uptime: int64(time.Since(b.Started()) / time.Second),
		Connects: st.Connects, Disconnects: st.Disconnects, ClientsConnected: st.ClientsConnected,
		Sessions: st.Sessions, PersistentSessions: st.PersistentSessions, PublishesIn: st.PublishesIn, PublishesOut: st.PublishesOut,
		BytesIn: st.BytesIn, BytesOut: st.BytesOut, Subscriptions: st.Subscriptions, Retained: int64(b.RetainedCount()), Drops: st.Drops,
		TakeoverRefused: st.TakeoverRefused, BindingRefused: st.BindingRefused, SessionsRefused: st.SessionsRefused,
		RetainedRefused: st.RetainedRefused,
		Auth: authStatsJSON{Success: as.Success.Load(), Anonymous: as.Anonymous.Load(), Failure: as.Failure.Load(),
			Banned: as.Banned.Load(), Denied: as.Denied.Load()},
		PublishesInRate: s.rates.get("publishes_in"), PublishesOutRate: s.rates.get("publishes_out"),
		BytesInRate: s.rates.get("bytes_in"), BytesOutRate: s.rates.get("bytes_out"),
	})
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) error {
	data, err := yaml.Marshal(config.Redacted(s.opts.Config))
	if err != nil {
		return err
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, m)
}
