package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/topic"
)

// Publisher injects messages into MQTT; *broker.Broker satisfies it. done
// is called once the message is routed and durably queued for every
// matching persistent session.
type Publisher interface {
	Publish(ctx context.Context, m *broker.Message, done func(error))
}

var _ Publisher = (*broker.Broker)(nil)

// maxPoll bounds the records of one poll: the batch published and
// committed together, and so the duplicate window of one restart.
const maxPoll = 500

// command is a compiled config.KafkaCommand.
type command struct {
	name   string
	topics []string
	group  string
	topic  template
	qos    byte
	retain bool
	// maxStall: a partition stalled that long by one session's full
	// queue goes on without that session's copies (0: never).
	maxStall time.Duration
	stats    *CommandStats
}

// CommandStats are one Kafka -> MQTT route's counters.
type CommandStats struct {
	Name string
	// Consumed counts records polled; Published those routed into MQTT;
	// Invalid those whose MQTT topic could not be rendered or was refused
	// (skipped and committed: retrying cannot fix them); Committed the
	// offsets commits that succeeded.
	Consumed, Published, Invalid, Committed atomic.Int64
	// Stalled is the partitions stopped now on a record a session's full
	// queue refused (or another failure); Stalls counts stalls begun;
	// Undeliverable counts stalled records committed because the session
	// that refused them expired, or without its copy once max_stall passed
	// (stall.go).
	Stalled, Stalls, Undeliverable atomic.Int64
}

func commandVar(name string) bool {
	return name == "key" || name == "topic" || name == "partition" || strings.HasPrefix(name, "header.")
}

func compileCommand(c config.KafkaCommand) (*command, error) {
	name := c.Name
	if name == "" {
		name = c.Topics
	}
	fail := func(err error) (*command, error) { return nil, fmt.Errorf("kafka command %q: %w", name, err) }
	cmd := &command{name: name, group: c.Group, qos: c.QoS, retain: c.Retain, maxStall: c.StallLimit(), stats: &CommandStats{Name: name}}
	for _, t := range strings.Split(c.Topics, ",") {
		if t = strings.TrimSpace(t); t != "" {
			if err := validKafkaTopic(t); err != nil {
				return fail(err)
			}
			cmd.topics = append(cmd.topics, t)
		}
	}
	if len(cmd.topics) == 0 {
		return fail(errors.New("topics is required"))
	}
	if cmd.group == "" {
		cmd.group = "culex-" + name
	}
	if c.QoS > 2 {
		return fail(fmt.Errorf("qos %d", c.QoS))
	}
	if c.MQTTTopic == "" {
		return fail(errors.New("mqtt_topic is required"))
	}
	t, err := parseTemplateFunc(c.MQTTTopic, commandVar, false)
	if err != nil {
		return fail(err)
	}
	if s, ok := t.literal(); ok {
		if err := topic.ValidName(s, 0); err != nil {
			return fail(fmt.Errorf("mqtt_topic %q: %w", s, err))
		}
	}
	cmd.topic = t
	return cmd, nil
}

// message maps a record to the MQTT message to publish.
func (c *command) message(r *kgo.Record) (*broker.Message, error) {
	t, err := c.topic.renderFunc(func(name string) (string, error) {
		switch {
		case name == "key":
			return string(r.Key), nil
		case name == "topic":
			return r.Topic, nil
		case name == "partition":
			return strconv.Itoa(int(r.Partition)), nil
		}
		h := strings.TrimPrefix(name, "header.")
		for _, x := range r.Headers {
			if x.Key == h {
				return string(x.Value), nil
			}
		}
		return "", fmt.Errorf("record has no header %q", h)
	})
	if err != nil {
		return nil, err
	}
	if err := topic.ValidName(t, 0); err != nil {
		return nil, fmt.Errorf("mqtt topic %q: %w", t, err)
	}
	return &broker.Message{Topic: t, Payload: r.Value, QoS: c.qos, Retain: c.retain}, nil
}

// consumer runs the commands: one group consumer per command.
type consumer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start consumes every configured command route and publishes into pub
// until Close. It returns once the consumers are created.
func (b *Bridge) Start(ctx context.Context, pub Publisher) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cons != nil {
		return errors.New("kafka: already started")
	}
	if err := checkGroups(b.cfg, b.commands); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	cons := &consumer{cancel: cancel}
	for _, cmd := range b.commands {
		opts, err := clientOpts(b.cfg)
		if err != nil {
			cancel()
			return err
		}
		opts = append(opts, groupOpts(b.cfg, cmd)...)
		opts = append(opts, kgo.ConsumeTopics(cmd.topics...),
			kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		st := newConsumeState(cmd)
		opts = append(opts, st.groupOpts()...)
		// Outages seen by a consumer are logged like the producer's.
		opts = append(opts, kgo.WithHooks(b.health.role("command "+cmd.name)))
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			cancel()
			cons.wg.Wait()
			return fmt.Errorf("kafka command %q: %w", cmd.name, err)
		}
		cons.wg.Add(1)
		go func() {
			defer cons.wg.Done()
			defer cl.Close()
			b.consume(ctx, cl, st, pub)
		}()
	}
	b.cons = cons
	return nil
}

// consume polls records, publishes them in order per partition, waits
// until each is routed and durably queued, then commits each partition up
// to its first record not delivered. A partition whose record a full
// session queue refused stalls on it (stall.go). Nothing is committed
// that was not delivered; a stop or crash before the commit redelivers
// what was polled (at most maxPoll records per consumer, plus the
// records held by stalled partitions).
func (b *Bridge) consume(ctx context.Context, cl *kgo.Client, st *consumeState, pub Publisher) {
	cmd := st.cmd
	defer func() { cmd.stats.Stalled.Add(-int64(len(st.stalls))) }() // the next consumer stalls again
	for ctx.Err() == nil {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if d := st.pollWait(); d > 0 {
			pctx, cancel = context.WithTimeout(ctx, d)
		}
		fs := cl.PollRecords(pctx, maxPoll)
		cancel()
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.Canceled) && !errors.Is(e.Err, context.DeadlineExceeded) {
				b.log.Warn("kafka command: fetch", "route", cmd.name, "topic", e.Topic, "partition", e.Partition, "err", e.Err)
			}
		}
		b.forgetRevoked(cl, st)
		if !b.deliverAll(ctx, cl, st, pub, fs.Records()) {
			cl.AllowRebalance()
			return
		}
		cl.AllowRebalance()
	}
}
