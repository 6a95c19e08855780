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
// once per transition per client role (the producer, the spool drainer,
// each command consumer) and broker address, from what that role's
// franz-go client sees: a failed connection (refused, a host name that does
// not resolve, TLS or SASL failure) or a request with no answer in time (a
// hung broker) makes the address unreachable for that role; a connection
// set up, or any request answered, makes it reachable. Roles do not mix: a
// broker whose produce path hangs while fetches answer is unreachable for
// the producer alone, logged once, not flapping. A broker answering with a
// Kafka error code is reachable: that error is the record's, counted by the
// route. A role that sends nothing logs nothing.
type health struct {
	log *slog.Logger

	// mu guards down and closed.
	mu sync.Mutex
	// down: the (role, address) pairs whose last outcome was a failure,
	// and since when.
	down   map[healthKey]time.Time
	closed bool
}

type healthKey struct{ role, addr string }

// roleHealth is the kgo hook of one client role.
type roleHealth struct {
	h    *health
	role string
}

var (
	_ kgo.HookBrokerConnect = roleHealth{}
	_ kgo.HookBrokerE2E     = roleHealth{}
)

func newHealth(log *slog.Logger) *health {
	return &health{log: log, down: map[healthKey]time.Time{}}
}

// role is the hook a client of that role (such as "producer", "spool
// drainer" or "command <name>") passes to kgo.WithHooks.
func (h *health) role(name string) kgo.Hook { return roleHealth{h, name} }

// OnBrokerConnect sees every dial, including its TLS, ApiVersions and SASL
// steps.
func (r roleHealth) OnBrokerConnect(m kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	r.h.outcome(r.role, m, err)
}

// OnBrokerE2E sees every request on an established connection.
func (r roleHealth) OnBrokerE2E(m kgo.BrokerMetadata, _ int16, e kgo.BrokerE2E) {
	r.h.outcome(r.role, m, e.Err())
}

func (h *health) outcome(role string, m kgo.BrokerMetadata, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return // our own doing, not Kafka's
	}
	k := healthKey{role, net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	since, isDown := h.down[k]
	switch {
	case err != nil && !isDown:
		h.down[k] = time.Now()
		h.log.Warn("kafka: unreachable", "role", k.role, "broker", k.addr, "err", err)
	case err == nil && isDown:
		delete(h.down, k)
		h.log.Info("kafka: reachable again", "role", k.role, "broker", k.addr, "down_for", time.Since(since).Round(time.Millisecond))
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
