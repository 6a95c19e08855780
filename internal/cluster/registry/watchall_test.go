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
