package kafka

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// health logs Kafka becoming unreachable (WARN) and reachable again (INFO),
// once per transition per broker address, from what the franz-go clients
// see: a failed connection (refused, a host name that does not resolve,
// TLS or SASL failure) or a request with no answer in time (a hung broker)
// makes an address unreachable; a connection set up, or any request
// answered, makes it reachable. A broker answering with a Kafka error code
// is reachable: that error is the record's, counted by the route.
type health struct {
	log *slog.Logger

	// mu guards down and closed.
	mu sync.Mutex
	// down: addresses whose last outcome was a failure, and since when.
	down   map[string]time.Time
	closed bool
}

var (
	_ kgo.HookBrokerConnect = (*health)(nil)
	_ kgo.HookBrokerE2E     = (*health)(nil)
)

func newHealth(log *slog.Logger) *health {
	return &health{log: log, down: map[string]time.Time{}}
}

// OnBrokerConnect sees every dial, including its TLS, ApiVersions and SASL
// steps.
func (h *health) OnBrokerConnect(m kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.outcome(m, err)
}

// OnBrokerE2E sees every request on an established connection.
func (h *health) OnBrokerE2E(m kgo.BrokerMetadata, _ int16, e kgo.BrokerE2E) {
	h.outcome(m, e.Err())
}

func (h *health) outcome(m kgo.BrokerMetadata, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return // our own doing, not Kafka's
	}
	addr := net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	since, isDown := h.down[addr]
	switch {
	case err != nil && !isDown:
		h.down[addr] = time.Now()
		h.log.Warn("kafka: unreachable", "broker", addr, "err", err)
	case err == nil && isDown:
		delete(h.down, addr)
		h.log.Info("kafka: reachable again", "broker", addr, "down_for", time.Since(since).Round(time.Millisecond))
	}
}

// close stops logging: connections the bridge closes are not outages.
func (h *health) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

// summaryEvery is the period of the failed and expired publishes summary.
const summaryEvery = 10 * time.Second

// summarize logs, every period, one line per route whose publishes failed
// or expired in that period, with the counts and the last error, until ctx
// ends. Nothing is logged for a route without failures.
func (b *Bridge) summarize(ctx context.Context, period time.Duration) {
	last := make([][2]int64, len(b.routes.list))
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.summary(last, period)
	}
}

// summary logs each route's failed and expired publishes since last (the
// counters at the previous summary), which it updates.
func (b *Bridge) summary(last [][2]int64, period time.Duration) {
	for i, r := range b.routes.list {
		now := [2]int64{r.stats.Failed.Load(), r.stats.Expired.Load()}
		failed, expired := now[0]-last[i][0], now[1]-last[i][1]
		last[i] = now
		if failed == 0 && expired == 0 {
			continue
		}
		b.log.Warn("kafka: publishes failed", "route", r.name, "failed", failed, "expired", expired,
			"period", period, "last_err", r.stats.lastError())
	}
}
