package kafka

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the bridge starts (consumers, spool committer and
// drainer, standalone sessions, franz-go's) must be gone when a test's
// cleanups have run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
