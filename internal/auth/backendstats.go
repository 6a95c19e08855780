package auth

import (
	"sort"
	"sync"
)

// BackendCounts counts logins by the backend that decided them and the
// result (success or failure). The backend is a backend's name, anonymous
// for clients let in without credentials, or none when no backend
// answered. It is counted at login rate, not per message.
type BackendCounts struct {
	// mu guards n.
	mu sync.Mutex
	n  map[BackendResult]int64
}

// BackendResult is one backend and result.
type BackendResult struct{ Backend, Result string }

func (b *BackendCounts) add(backend, result string) {
	if backend == "" {
		backend = "none"
	}
	b.mu.Lock()
	if b.n == nil {
		b.n = map[BackendResult]int64{}
	}
	b.n[BackendResult{backend, result}]++
	b.mu.Unlock()
}

// Counts returns the counts so far, sorted by backend and result.
func (b *BackendCounts) Counts() ([]BackendResult, []int64) {
	b.mu.Lock()
	keys := make([]BackendResult, 0, len(b.n))
	for k := range b.n {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].Backend < keys[j].Backend || keys[i].Backend == keys[j].Backend && keys[i].Result < keys[j].Result
	})
	vals := make([]int64, len(keys))
	for i, k := range keys {
		vals[i] = b.n[k]
	}
	b.mu.Unlock()
	return keys, vals
}
