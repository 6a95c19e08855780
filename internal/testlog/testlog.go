// Package testlog holds a log destination for tests that read back what a
// server logged; it imports nothing of ours.
package testlog

import (
	"strings"
	"sync"
)

// Buffer is an io.Writer for a slog handler that the server's goroutines
// may write to while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
