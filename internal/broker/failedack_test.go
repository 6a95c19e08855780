package broker

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/culexmq/culex/internal/testlog"
)

// TestFailedAcksSummarised: a burst of publishes that could not be
// acknowledged is one log line with its count, not a line each.
func TestFailedAcksSummarised(t *testing.T) {
	var buf testlog.Buffer
	b := &Broker{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 10000 {
		b.noteFailedAck("c1", errors.New("node gone"))
	}
	if n := strings.Count(buf.String(), "publish not acknowledged"); n != 1 {
		t.Fatalf("%d lines for a burst of 10000 failures in under a second, want 1:\n%s", n, buf.String())
	}
	if got := b.failedAcks.count.Load(); got != 9999 {
		t.Fatalf("%d failures pending for the next line, want 9999", got)
	}
}
