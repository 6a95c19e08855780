package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// InFlight says whether err is JetStream's refusal of a compare-and-set
// with error 10164 ("wrong last sequence", without a sequence): the form a
// replicated stream's leader gives while it tracks another write of the
// key as in flight (proposed, not yet applied). Unlike 10071 it is no
// proof that the key changed: the other write may fail, or, when
// nats-server loses track of it (docs/cluster.md, known issues), may never
// have existed as far as the stream is concerned.
func InFlight(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// DefaultStuckAfter is how long a key's compare-and-sets may be refused
// with 10164 while its revision at the leader stays the one expected
// before a CASGuard asks the bucket's leader to step down.
const DefaultStuckAfter = 5 * time.Second

// CASGuard watches the compare-and-sets JetStream refuses with 10164. A
// write of the same key in flight at the leader is applied (or fails) in
// milliseconds; a key still refused after StuckAfter, while a read at the
// leader shows the revision the writer expects, is one nats-server's
// leader keeps marked as in flight for a write it will never apply (it
// forgets such marks only when its leadership ends). The guard then asks
// the leader of the bucket's stream to step down, at most once per
// StuckAfter and bucket, logs it once per key and counts it. Writers keep
// their compare-and-sets as they are: a stepdown changes no record, and a
// key that really changed is refused with 10071 by any leader.
type CASGuard struct {
	nc    *nats.Conn
	log   *slog.Logger
	after time.Duration

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stepdowns atomic.Uint64
	changed   atomic.Uint64 // checks that found the key changed
	tracked   atomic.Int32  // len(keys): lets Done skip the lock

	mu     sync.Mutex
	keys   map[string]*stuckKey // bucket + " " + key
	downAt map[string]time.Time // bucket -> when this guard last asked its leader to step down
	closed bool
}

// stuckKey is one key's run of 10164 refusals at one expected revision.
type stuckKey struct {
	rev         uint64
	since, last time.Time
	checking    bool // a check at the leader is running
	logged      bool
}

// NewCASGuard makes a guard that reads and asks for stepdowns through nc;
// after <= 0 means DefaultStuckAfter.
func NewCASGuard(nc *nats.Conn, log *slog.Logger, after time.Duration) *CASGuard {
	if after <= 0 {
		after = DefaultStuckAfter
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &CASGuard{nc: nc, log: log, after: after, keys: map[string]*stuckKey{}, downAt: map[string]time.Time{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

// Refused notes that JetStream refused a compare-and-set of key in bucket,
// expecting revision rev, with 10164. It does not block: once the key has
// been refused so for StuckAfter (refusals less than StuckAfter apart), a
// check reads the key at the bucket's leader in the background and, if
// its revision is still rev, asks the leader to step down.
func (g *CASGuard) Refused(bucket, key string, rev uint64) {
	id := bucket + " " + key
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	k := g.keys[id]
	if k == nil {
		g.pruneLocked(now)
		k = &stuckKey{}
		g.keys[id] = k
		g.tracked.Store(int32(len(g.keys)))
	}
	if k.rev != rev || now.Sub(k.last) > g.after {
		k.rev, k.since, k.logged = rev, now, false
	}
	k.last = now
	if k.checking || now.Sub(k.since) < g.after {
		return
	}
	k.checking = true
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.check(bucket, key, id, rev)
	}()
}

// pruneLocked forgets the keys not refused for a while (their writer gave
// up, or succeeded without saying so).
func (g *CASGuard) pruneLocked(now time.Time) {
	for id, k := range g.keys {
		if !k.checking && now.Sub(k.last) > 2*g.after {
			delete(g.keys, id)
		}
	}
}

// Done forgets key: a compare-and-set of it succeeded, or its writer gave
// it up.
func (g *CASGuard) Done(bucket, key string) {
	if g.tracked.Load() == 0 {
		return
	}
	g.mu.Lock()
	delete(g.keys, bucket+" "+key)
	g.tracked.Store(int32(len(g.keys)))
	g.mu.Unlock()
}

// check reads key at the leader and, when its revision is still rev, asks
// the leader to step down.
func (g *CASGuard) check(bucket, key, id string, rev uint64) {
	ctx, cancel := context.WithTimeout(g.ctx, max(g.after, 2*time.Second))
	defer cancel()
	cur, _, err := ReadLast(ctx, g.nc, bucket, key)
	now := time.Now()
	g.mu.Lock()
	k := g.keys[id]
	if k != nil {
		k.checking = false
	}
	if k == nil || k.rev != rev {
		g.mu.Unlock()
		return // done, or refused at another revision since
	}
	switch {
	case err != nil:
		g.mu.Unlock()
		return // tried again at the next refusal
	case cur != rev:
		// Changed: the writer's next try gets 10071 from any leader.
		delete(g.keys, id)
		g.tracked.Store(int32(len(g.keys)))
		g.mu.Unlock()
		g.changed.Add(1)
		return
	}
	k.since = now // another StuckAfter before the next stepdown for it
	logIt := !k.logged
	k.logged = true
	recent := now.Sub(g.downAt[bucket]) < g.after
	if !recent {
		g.downAt[bucket] = now
	}
	g.mu.Unlock()
	if recent {
		return // another key of the bucket had its leader step down just now
	}
	err = g.stepDown(ctx, bucket)
	if err == nil {
		g.stepdowns.Add(1)
	}
	if logIt || err != nil {
		g.log.Warn("cluster: JetStream keeps refusing a key's compare-and-set as if another write of it were in flight (error 10164) while the key is unchanged at the leader: asked the leader of the bucket's stream to step down",
			"bucket", bucket, "key", key, "revision", rev, "refused_for", g.after, "err", err)
	}
}

// stepDown asks the leader of bucket's stream to step down.
func (g *CASGuard) stepDown(ctx context.Context, bucket string) error {
	var out struct {
		apiAnswer
		Success bool `json:"success"`
	}
	if err := jsAPI(ctx, g.nc, "$JS.API.STREAM.LEADER.STEPDOWN.KV_"+bucket, nil, "stepdown of "+bucket, &out); err != nil {
		return err
	}
	if !out.Success {
		return fmt.Errorf("stepdown of %s: not done", bucket)
	}
	return nil
}

// Stepdowns is the number of stepdowns the guard asked for (and the
// leader accepted).
func (g *CASGuard) Stepdowns() uint64 { return g.stepdowns.Load() }

// Changed is the number of checks that found the key changed: the
// refusals were a real conflict.
func (g *CASGuard) Changed() uint64 { return g.changed.Load() }

// Close stops the checks and waits for them.
func (g *CASGuard) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
