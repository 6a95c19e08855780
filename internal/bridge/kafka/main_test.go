package kafka

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the bridge starts (consumers, spool committer and
// drainer, standalone sessions, franz-go's) must be gone when a test's
// cleanups have run. The culex binary some tests build is removed.
func TestMain(m *testing.M) {
	code := m.Run()
	removeCulexBinary()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
