package kafka

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The topic cache asks Kafka once per miss, answers the waiters in the
// order they asked, says missing for a missing topic and unknown (accept)
// within its bound when Kafka does not answer, then answers from the cache.
func TestTopicCache(t *testing.T) {
	kc := startKafka(t, kfake.SeedTopics(1, "here"))
	brokers := kc.ListenAddrs()[0]
	get := func(c *topicCache, topic string) topicState {
		ch := make(chan topicState, 1)
		c.get(topic, func(st topicState) { ch <- st })
		select {
		case st := <-ch:
			return st
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no answer", topic)
			return 0
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := newTopicCache(cl, false, 0, 0)
	defer c.close()

	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := range 100 {
		wg.Add(1)
		c.get("here", func(st topicState) {
			defer wg.Done()
			if st != topicExists {
				t.Errorf("here: state %d", st)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("callbacks out of order: %v", order)
		}
	}
	if st := get(c, "absent"); st != topicMissing {
		t.Fatalf("absent: state %d", st)
	}

	// Kafka gone: the first lookup gives up within its bound, the next
	// publishes are answered from the cache at once.
	kc.Close()
	start := time.Now()
	if st := get(c, "other"); st != topicUnknown {
		t.Fatalf("unreachable: state %d", st)
	}
	if d := time.Since(start); d > topicLookupTimeout+time.Second {
		t.Fatalf("unreachable lookup took %s", d)
	}
	start = time.Now()
	if st := get(c, "other"); st != topicUnknown || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("cached unknown: state %d after %s", st, time.Since(start))
	}
	if st := get(c, "here"); st != topicExists {
		t.Fatalf("cached here: state %d", st)
	}
}
