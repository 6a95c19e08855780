package kafka

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the bridge starts (consumers, spool committer and
// drainer, standalone sessions, franz-go's) must be gone when a test's
// cleanups have run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A debugging loop in the broker's uncommitted working copy
		// (broker.New, 2026-11-22); not the bridge's. Remove with it.
		goleak.IgnoreAnyFunction("github.com/culexmq/culex/internal/broker.New.func1"))
}
