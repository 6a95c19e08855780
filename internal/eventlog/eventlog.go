// Package eventlog writes the log lines an operator reads: each client's
// connect and disconnect, refused CONNECTs, connections that failed
// before MQTT (TLS handshakes, PROXY headers, WebSocket upgrades), ACL
// denials and dropped messages. Events that can come in floods are
// summarised: the first few of a kind in a period are logged one by one,
// the rest as one line with a count at the end of the period, and a line
// says when they stop. It logs at connect rate, never per message: drops
// and denials are read from the counters the node keeps anyway.
package eventlog

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Period is how often flood summaries are written.
const Period = 10 * time.Second

// PerPeriod is how many events of one kind are logged one by one in a
// period before the rest are only counted.
const PerPeriod = 5

// Counters are the node's counters the summaries read; nil fields are
// left out.
type Counters struct {
	// Drops returns the dropped message copies by reason (broker.Stats).
	Drops func() map[string]uint64
	// Denied returns the ACL denials so far (auth.Stats.Denied).
	Denied func() int64
}

// Logger is a broker hook (ConnectHook, DisconnectHook, RefuseHook) and
// the owner of the periodic summaries (Run).
type Logger struct {
	log *slog.Logger

	// mu guards kinds and counters.
	mu       sync.Mutex
	kinds    map[string]*kind // by event kind (a refusal reason, "handshake")
	counters Counters
}

// kind is one flood-prone event kind within the current period.
type kind struct {
	msg   string // the summary's message
	n     int    // events this period
	quiet bool   // the previous period had none
	last  []any  // attributes of the latest event
}

var (
	_ broker.ConnectHook    = (*Logger)(nil)
	_ broker.DisconnectHook = (*Logger)(nil)
	_ broker.RefuseHook     = (*Logger)(nil)
)

// New returns a Logger writing to log.
func New(log *slog.Logger) *Logger {
	return &Logger{log: log, kinds: map[string]*kind{}}
}

// Use sets the counters the summaries read.
func (l *Logger) Use(c Counters) {
	l.mu.Lock()
	l.counters = c
	l.mu.Unlock()
}

func clientAttrs(c *broker.ClientInfo) []any {
	return []any{"client_id", c.ClientID, "username", c.Username, "remote", addr(c.Remote),
		"protocol", c.Version.String(), "listener", c.Listener}
}

func addr(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// OnConnect logs an accepted client (broker.ConnectHook).
func (l *Logger) OnConnect(c *broker.ClientInfo, sessionPresent bool) {
	l.log.Info("client connected", append(clientAttrs(c), "session_present", sessionPresent)...)
}

// OnDisconnect logs a client that went away, with the reason
// (broker.DisconnectHook).
func (l *Logger) OnDisconnect(c *broker.ClientInfo, err error) {
	reason := "client sent DISCONNECT"
	switch {
	case errors.Is(err, io.EOF):
		reason = "connection closed by the client without DISCONNECT"
	case err != nil:
		reason = err.Error()
	}
	l.log.Info("client disconnected", append(clientAttrs(c), "reason", reason)...)
}

// OnRefuse logs a refused CONNECT (broker.RefuseHook), summarised per
// reason.
func (l *Logger) OnRefuse(c *broker.ClientInfo, code packet.Code) {
	attrs := append(clientAttrs(c), "reason", code.Reason)
	l.event("refused "+code.Reason, "connect refused", attrs)
}

// Handshake logs a connection to listener from remote that failed before
// MQTT (a TLS handshake, a PROXY header, a WebSocket upgrade) with error
// text errText; summarised.
func (l *Logger) Handshake(listener, remote, errText string) {
	what := "connection failed before MQTT"
	if strings.HasPrefix(errText, "tls handshake") || strings.Contains(errText, "tls:") {
		what = "TLS handshake failed"
	}
	l.event(what, what, []any{"listener", listener, "remote", remote, "err", errText})
}

// event logs one flood-prone event: one by one up to PerPeriod per kind
// and period, counted after that.
func (l *Logger) event(key, msg string, attrs []any) {
	l.mu.Lock()
	k := l.kinds[key]
	if k == nil {
		k = &kind{msg: msg, quiet: true}
		l.kinds[key] = k
	}
	k.n++
	k.last = attrs
	n := k.n
	l.mu.Unlock()
	if n <= PerPeriod {
		l.log.Warn(msg, attrs...)
	}
}

// Run writes the summaries every period until ctx ends.
func (l *Logger) Run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	var prev counts
	prev = l.read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.summarise(period)
		now := l.read()
		l.summariseCounters(prev, now, period)
		prev = now
	}
}

// summarise writes one line per kind whose events went past PerPeriod,
// and one when a kind that had events has none for a whole period.
func (l *Logger) summarise(period time.Duration) {
	l.mu.Lock()
	type line struct {
		msg   string
		attrs []any
		info  bool
	}
	var lines []line
	for key, k := range l.kinds {
		switch {
		case k.n > PerPeriod:
			lines = append(lines, line{k.msg + " (summary)", append([]any{"count", k.n, "period", period, "logged", PerPeriod}, slog.Group("latest", k.last...)), false})
		case k.n == 0 && !k.quiet:
			lines = append(lines, line{k.msg + ": none in the last period", []any{"period", period}, true})
		case k.n == 0:
			delete(l.kinds, key)
			continue
		}
		k.quiet = k.n == 0
		k.n = 0
	}
	l.mu.Unlock()
	sort.Slice(lines, func(i, j int) bool { return lines[i].msg < lines[j].msg })
	for _, ln := range lines {
		if ln.info {
			l.log.Info(ln.msg, ln.attrs...)
		} else {
			l.log.Warn(ln.msg, ln.attrs...)
		}
	}
}

// counts is a reading of the node's counters.
type counts struct {
	drops  map[string]uint64
	denied int64
}

func (l *Logger) read() counts {
	l.mu.Lock()
	c := l.counters
	l.mu.Unlock()
	var r counts
	if c.Drops != nil {
		r.drops = c.Drops()
	}
	if c.Denied != nil {
		r.denied = c.Denied()
	}
	return r
}

// summariseCounters logs the ACL denials and the dropped messages of the
// period, by reason; nothing for a period without any.
func (l *Logger) summariseCounters(prev, now counts, period time.Duration) {
	if d := now.denied - prev.denied; d > 0 {
		l.log.Warn("ACL denials", "count", d, "period", period)
	}
	var attrs []any
	var total uint64
	for _, r := range sortedKeys(now.drops) {
		if d := now.drops[r] - prev.drops[r]; d > 0 {
			attrs = append(attrs, r, d)
			total += d
		}
	}
	if total > 0 {
		l.log.Warn("messages dropped", append([]any{"count", total, "period", period}, attrs...)...)
	}
}

func sortedKeys(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
