package eventlog

import (
	"context"
	"log/slog"
	"strings"
)

// rejectedMsg is the (debug) message internal/listener logs for a
// connection that failed its handshakes; TestHandshakeFailureLogged
// breaks if it changes.
const rejectedMsg = "connection rejected"

// ListenerLogger returns the logger to give listener.New for the listener
// named listener: it passes every record on to base, except the
// listener's per-connection "connection rejected" (debug) records, which
// become Handshake events, summarised. Refusals of untrusted PROXY peers
// are left out: the listener summarises those itself.
func (l *Logger) ListenerLogger(base *slog.Logger, listener string) *slog.Logger {
	return slog.New(&listenerHandler{Handler: base.Handler(), l: l, listener: listener})
}

type listenerHandler struct {
	slog.Handler
	l        *Logger
	listener string
}

// Enabled lets the debug rejection records through whatever the level.
func (h *listenerHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level == slog.LevelDebug || h.Handler.Enabled(ctx, level)
}

func (h *listenerHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != rejectedMsg {
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
		return h.Handler.Handle(ctx, r)
	}
	var remote, errText string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "remote":
			remote = a.Value.String()
		case "err":
			errText = a.Value.String()
		}
		return true
	})
	if strings.Contains(errText, "trusted_proxies") {
		return nil
	}
	h.l.Handshake(h.listener, remote, errText)
	return nil
}

func (h *listenerHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &listenerHandler{Handler: h.Handler.WithAttrs(as), l: h.l, listener: h.listener}
}

func (h *listenerHandler) WithGroup(name string) slog.Handler {
	return &listenerHandler{Handler: h.Handler.WithGroup(name), l: h.l, listener: h.listener}
}
