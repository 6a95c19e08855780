package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// flakyKV is a bucket whose first watches fail, as they do while the
// cores have no meta leader.
type flakyKV struct {
	jetstream.KeyValue // only WatchAll and Bucket are called
	fails, calls       int
}

func (f *flakyKV) Bucket() string { return "flaky" }

func (f *flakyKV) WatchAll(context.Context, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	f.calls++
	if f.calls <= f.fails {
		return nil, context.DeadlineExceeded
	}
	return nilWatcher{}, nil
}

type nilWatcher struct{ jetstream.KeyWatcher }

// TestWatchAllRetries: a watch that cannot be made yet is tried again
// until it starts (a node whose Start gave up at the first failure stayed
// not ready for good), and given up only when the caller's context ends.
func TestWatchAllRetries(t *testing.T) {
	kv := &flakyKV{fails: 3}
	w, err := WatchAll(context.Background(), context.Background(), kv)
	if err != nil || w == nil || kv.calls != 4 {
		t.Fatalf("WatchAll: %v, %v after %d calls; want a watch at the 4th", w, err, kv.calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	kv = &flakyKV{fails: 1 << 30}
	if _, err := WatchAll(ctx, context.Background(), kv); !errors.Is(err, context.DeadlineExceeded) || kv.calls < 2 {
		t.Fatalf("WatchAll with no watch possible: %v after %d calls; want the context's error after retries", err, kv.calls)
	}
}

// hangingWatcher is a watch whose Stop waits until released, as nats.go's
// does while it asks a meta leader that is gone to delete the watch's
// consumer (the JetStream API timeout, 5 s).
type hangingWatcher struct {
	jetstream.KeyWatcher
	updates chan jetstream.KeyValueEntry
	release chan struct{}
}

func (h *hangingWatcher) Updates() <-chan jetstream.KeyValueEntry { return h.updates }
func (h *hangingWatcher) Stop() error                             { <-h.release; return nil }

// TestFollowEndsWithoutStop: a watch ends with its context (WatchAll ties
// it to it), and Follow returns at once rather than waiting for the
// consumer's delete: a whole cluster stopped at once used to wait 5 s per
// watch on every node that outlived the meta leader.
func TestFollowEndsWithoutStop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &hangingWatcher{updates: make(chan jetstream.KeyValueEntry), release: make(chan struct{})}
	defer close(w.release)
	done := make(chan struct{})
	go func() { Follow(ctx, w, func(jetstream.KeyValueEntry) {}); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Follow still waits for the watch's Stop 10 s after its context ended")
	}
}
