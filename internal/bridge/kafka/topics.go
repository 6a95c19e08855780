package kafka

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Bounds of the spool-mode topic check.
const (
	// topicLookupTimeout bounds one metadata request made for a publish.
	topicLookupTimeout = 2 * time.Second
	// topicMissingTTL: a topic found missing is refused without asking
	// Kafka again for this long (a device retrying must not flood Kafka).
	topicMissingTTL = time.Second
	// topicUnknownTTL: while Kafka did not answer, publishes to the topic
	// are accepted into the spool without asking again for this long.
	topicUnknownTTL = 5 * time.Second
)

// topicState is what the cache knows about one Kafka topic.
type topicState int

const (
	topicUnknown topicState = iota // Kafka did not answer: accept, drain checks
	topicExists
	topicMissing
)

// topicCache answers "does this Kafka topic exist?" for spool-mode
// publishes, which are acknowledged before Kafka sees them. A topic once
// seen is trusted (a later deletion is the drainer's problem: it holds the
// records, see drain.go); a miss asks Kafka, once per topic however many
// publishes wait.
type topicCache struct {
	cl     *kgo.Client
	create bool // kafka.create_topics: create a missing topic instead
	parts  int32
	repl   int16

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards m. Callbacks run without it; a topic stays loading until
	// its waiters have run, so publishes to one topic reach the spool in
	// the order they arrived.
	mu sync.Mutex
	m  map[string]*topicEntry
}

type topicEntry struct {
	state   topicState
	at      time.Time // when state was learned
	loading bool
	waiters []func(topicState)
}

func newTopicCache(cl *kgo.Client, create bool, parts, repl int) *topicCache {
	ctx, cancel := context.WithCancel(context.Background())
	p, r := int32(parts), int16(repl)
	if p == 0 {
		p = -1
	}
	if r == 0 {
		r = -1
	}
	return &topicCache{cl: cl, create: create, parts: p, repl: r, ctx: ctx, cancel: cancel, m: map[string]*topicEntry{}}
}

// known records that topic exists (Check found it).
func (c *topicCache) known(topic string) {
	c.mu.Lock()
	c.m[topic] = &topicEntry{state: topicExists, at: time.Now()}
	c.mu.Unlock()
}

// get calls fn with what is known of topic, at once when the cache
// answers, else after one bounded metadata request.
func (c *topicCache) get(topic string, fn func(topicState)) {
	c.mu.Lock()
	e := c.m[topic]
	if e == nil {
		e = &topicEntry{}
		c.m[topic] = e
	}
	if !e.loading && e.fresh() {
		st := e.state
		c.mu.Unlock()
		fn(st)
		return
	}
	e.waiters = append(e.waiters, fn)
	if e.loading {
		c.mu.Unlock()
		return
	}
	e.loading = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		st := c.lookup(topic)
		c.mu.Lock()
		e.state, e.at = st, time.Now()
		for len(e.waiters) > 0 {
			ws := e.waiters
			e.waiters = nil
			c.mu.Unlock()
			for _, w := range ws {
				w(st)
			}
			c.mu.Lock()
		}
		e.loading = false
		c.mu.Unlock()
	}()
}

func (e *topicEntry) fresh() bool {
	switch {
	case e.at.IsZero():
		return false
	case e.state == topicExists:
		return true
	case e.state == topicMissing:
		return time.Since(e.at) < topicMissingTTL
	}
	return time.Since(e.at) < topicUnknownTTL
}

// lookup asks Kafka for topic's metadata (creating it when allowed).
func (c *topicCache) lookup(topic string) topicState {
	ctx, cancel := context.WithTimeout(c.ctx, topicLookupTimeout)
	defer cancel()
	adm := kadm.NewClient(c.cl)
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return topicUnknown
	}
	d, ok := md.Topics[topic]
	switch {
	case ok && d.Err == nil:
		return topicExists
	case ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return topicUnknown // e.g. leader not available: Kafka knows it
	case !c.create:
		return topicMissing
	}
	res, err := adm.CreateTopics(ctx, c.parts, c.repl, nil, topic)
	if err != nil {
		return topicUnknown
	}
	if r, ok := res[topic]; ok && r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
		return topicMissing
	}
	return topicExists
}

// close cancels lookups in progress and waits for them.
func (c *topicCache) close() {
	c.cancel()
	c.wg.Wait()
}
