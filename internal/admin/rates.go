package admin

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// rateEvery is the period the rates are measured over.
const rateEvery = 5 * time.Second

// rates measures per-second rates of the node's counters over the last
// rateEvery, for answers that show a rate (Kafka routes, stats): a script
// or `culex ctl` reads one answer, it cannot take differences.
type rates struct {
	// mu guards the fields below.
	mu   sync.Mutex
	last map[string]int64   // counter values at the last sample
	at   time.Time          // when they were taken
	rate map[string]float64 // per second between the last two samples
}

// sample takes the counters now and updates the rates.
func (r *rates) sample(now time.Time, counters map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last != nil {
		dt := now.Sub(r.at).Seconds()
		r.rate = make(map[string]float64, len(counters))
		for k, v := range counters {
			if old, ok := r.last[k]; ok && dt > 0 && v >= old {
				r.rate[k] = float64(v-old) / dt
			}
		}
	}
	r.last, r.at = counters, now
}

// get returns the rate of counter k (0 before two samples).
func (r *rates) get(k string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rate[k]
}

// counters are the counters the API shows rates of.
func (s *Server) counters() map[string]int64 {
	st := s.opts.Broker.Stats()
	m := map[string]int64{"publishes_in": int64(st.PublishesIn), "publishes_out": int64(st.PublishesOut),
		"bytes_in": int64(st.BytesIn), "bytes_out": int64(st.BytesOut)}
	if k := s.opts.Kafka; k != nil {
		for i, r := range k.Stats() {
			key := routeKey(i)
			m[key+"produced"], m[key+"failed"] = r.Produced, r.Failed
		}
	}
	return m
}

// routeKey prefixes the counters of the Kafka route at index i.
func routeKey(i int) string { return "route/" + strconv.Itoa(i) + "/" }

// measure samples the counters every rateEvery until ctx ends.
func (s *Server) measure(ctx context.Context) {
	t := time.NewTicker(rateEvery)
	defer t.Stop()
	s.rates.sample(time.Now(), s.counters())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.rates.sample(now, s.counters())
		}
	}
}
