package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/culexmq/culex/internal/broker"
	"github.com/culexmq/culex/internal/config"
	"github.com/culexmq/culex/internal/mqtt/packet"
)

// Bridge carries MQTT messages into Kafka. It is safe for concurrent use.
type Bridge struct {
	cfg    config.Kafka
	log    *slog.Logger
	routes *routes
	cl     *kgo.Client

	commands []*command
	spool    *spool      // nil unless a route uses ack: spool
	topics   *topicCache // spool-mode topic existence; nil without spool

	// identity names a client's authenticated identity (UseIdentity).
	identity func(*broker.ClientInfo) string

	// sourceReady: the standalone MQTT session is subscribed.
	sourceReady atomic.Bool
	// source publishes Kafka -> MQTT commands in standalone mode.
	source mqttPublisher

	// mu guards cons and purged.
	mu   sync.Mutex
	cons *consumer
	// purged: when the producer last forgot a topic (forgetStaleTopic).
	purged map[string]time.Time

	// health logs Kafka becoming unreachable and reachable again.
	health *health
	// stopSummary ends the failure summary (summarize); summaryWG waits
	// for it.
	stopSummary context.CancelFunc
	summaryWG   sync.WaitGroup

	closeOnce sync.Once
}

// New validates cfg, compiles its routes and creates the producer. It does
// not contact Kafka: call Check before serving.
func New(cfg config.Kafka, log *slog.Logger) (*Bridge, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if strings.TrimSpace(cfg.Brokers) == "" {
		return nil, errors.New("kafka: brokers is empty")
	}
	rs, err := compileRoutes(cfg.Routes)
	if err != nil {
		return nil, err
	}
	var cmds []*command
	for _, c := range cfg.Commands {
		cmd, err := compileCommand(c)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, cmd)
	}
	opts, err := clientOpts(cfg)
	if err != nil {
		return nil, err
	}
	h := newHealth(log)
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(h.role("producer")))...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	b := &Bridge{cfg: cfg, log: log, routes: rs, cl: cl, commands: cmds, health: h}
	for _, r := range rs.list {
		if r.ack == AckSpool {
			if b.spool, err = openSpool(cfg.Spool, cfg, rs.list, log, h.role("spool drainer")); err != nil {
				cl.Close()
				return nil, err
			}
			b.topics = newTopicCache(cl, cfg.CreateTopics, cfg.Partitions, cfg.ReplicationFactor)
			break
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stopSummary = cancel
	b.summaryWG.Add(1)
	go func() { defer b.summaryWG.Done(); b.summarize(ctx, summaryEvery) }()
	return b, nil
}

// clientOpts are the producer's options: idempotent, acks=all, murmur2 key
// partitioning like the Java client, a bounded buffer, and no record
// delivery timeout (records are retried until Kafka acks them).
func clientOpts(cfg config.Kafka) ([]kgo.Opt, error) {
	var seeds []string
	for _, s := range strings.Split(cfg.Brokers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // nil: Kafka's murmur2
		kgo.ProducerLinger(0),
	}
	if cfg.ClientID != "" {
		opts = append(opts, kgo.ClientID(cfg.ClientID))
	}
	if cfg.ProduceTimeout > 0 {
		// A hung broker (accepts, never answers) is noticed within the
		// produce timeout: the request times out, the connection is cut and
		// the record is sent again. No record delivery timeout: the
		// publish's own timer (Intercept) answers the device, and the
		// record stays buffered, retried until Kafka takes it.
		rt := min(max(cfg.ProduceTimeout/2, time.Second), 10*time.Second)
		opts = append(opts, kgo.ProduceRequestTimeout(rt), kgo.RequestTimeoutOverhead(rt))
	}
	if cfg.MaxBufferedRecords > 0 {
		opts = append(opts, kgo.MaxBufferedRecords(cfg.MaxBufferedRecords))
	}
	m, err := saslMechanism(cfg.SASL)
	if err != nil {
		return nil, err
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	if cfg.TLS.Enabled {
		tc, err := tlsConfig(cfg.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts, nil
}

func saslMechanism(c config.KafkaSASL) (sasl.Mechanism, error) {
	switch strings.ToLower(c.Mechanism) {
	case "", "none":
		return nil, nil
	case "plain":
		return plain.Auth{User: c.Username, Pass: c.Password}.AsMechanism(), nil
	case "scram-sha-256":
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism(), nil
	case "scram-sha-512":
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka: sasl mechanism %q: want none, plain, scram-sha-256 or scram-sha-512", c.Mechanism)
}

func tlsConfig(c config.KafkaTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka tls: %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// UseIdentity sets how the bridge learns a client's authenticated
// identity, the username its records carry (the mqtt.username header, the
// envelope's username, ${username} in topics and keys): what the
// authentication layer decided, such as a certificate's name, never the
// CONNECT packet's username field, which a client authenticated by other
// means may fill with anything. id returns "" for an anonymous client.
// Without it records carry no username. Call it before the interceptor
// serves.
func (b *Bridge) UseIdentity(id func(c *broker.ClientInfo) string) { b.identity = id }

// username is c's authenticated identity for its records.
func (b *Bridge) username(c *broker.ClientInfo) string {
	if b.identity == nil {
		return ""
	}
	return b.identity(c)
}

// Interceptor returns the broker.Interceptor that produces matching
// messages; add it to broker.Options.Interceptors.
func (b *Bridge) Interceptor() broker.Interceptor { return interceptor{b: b} }

// Stats returns a copy of every route's counters, in config order.
func (b *Bridge) Stats() []RouteSnapshot {
	out := make([]RouteSnapshot, len(b.routes.list))
	for i, r := range b.routes.list {
		out[i] = r.stats.snapshot()
		if r.ack == AckSpool && b.spool != nil {
			out[i].SpoolAge = b.spool.routeAge(r.idx)
		}
	}
	return out
}

// CommandStats returns a copy of every Kafka -> MQTT route's counters.
func (b *Bridge) CommandStats() []CommandSnapshot {
	out := make([]CommandSnapshot, len(b.commands))
	for i, c := range b.commands {
		s := c.stats
		out[i] = CommandSnapshot{Name: s.Name, Consumed: s.Consumed.Load(), Published: s.Published.Load(),
			Invalid: s.Invalid.Load(), Committed: s.Committed.Load()}
		out[i].Stalled, out[i].Stalls, out[i].Undeliverable = s.Stalled.Load(), s.Stalls.Load(), s.Undeliverable.Load()
	}
	return out
}

// CommandSnapshot is a copy of one Kafka -> MQTT route's counters.
type CommandSnapshot struct {
	Name                                    string
	Consumed, Published, Invalid, Committed int64
	Stalled, Stalls, Undeliverable          int64 // see CommandStats
}

// Close stops the consumers (uncommitted batches are redelivered by the
// next consumer of the group) and the producer. Records not yet acked
// fail; their publishes are not acknowledged (kafka mode), so devices
// retransmit them.
func (b *Bridge) Close() {
	b.mu.Lock()
	cons := b.cons
	b.mu.Unlock()
	if cons != nil {
		cons.cancel()
		cons.wg.Wait()
	}
	b.closeOnce.Do(func() {
		b.stopSummary()
		b.summaryWG.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.cl.Flush(ctx) // best effort: give acked-soon records their chance
		b.health.close()
		if b.topics != nil {
			b.topics.close()
		}
		b.cl.Close()
		if b.spool != nil {
			b.spool.close()
		}
	})
}

// interceptor produces for a Bridge. keep (standalone mode) gives the
// publish no deadline of its own: done waits for Kafka's answer however
// long that takes, so the source's message stays unacknowledged and is not
// redelivered and produced again while its record waits in the producer.
type interceptor struct {
	b    *Bridge
	keep bool
}

var _ broker.Interceptor = interceptor{}

// Intercept produces one record per matching route. A QoS 1/2 message's
// done waits for every kafka-mode record; QoS 0 and none-mode records do
// not hold it. Intercept never blocks: a full producer buffer fails the
// publish with 0x97 instead.
func (i interceptor) Intercept(_ context.Context, c *broker.ClientInfo, m *broker.Message, done func(error)) {
	b := i.b
	var buf [4]*route
	rs := b.routes.match(buf[:0], m.Topic)
	if len(rs) == 0 {
		done(nil)
		return
	}
	received := time.Now()
	user := b.username(c)
	w := &wait{n: 1, done: done}
	var held []*route
	for _, r := range rs {
		r.stats.Matched.Add(1)
		hold := r.ack == AckKafka && m.QoS > 0
		rec, err := r.record(c, user, m, received)
		if err != nil {
			r.stats.fail(err)
			b.log.Warn("kafka: cannot map message", "route", r.name, "topic", m.Topic, "client", c.ClientID, "err", err)
			if hold {
				w.fail(packet.Code{Value: packet.ErrTopicNameInvalid.Value, Reason: "kafka route " + r.name + ": " + err.Error()})
			}
			continue
		}
		if r.ack == AckSpool {
			b.spoolAppend(r, m.QoS > 0, rec, w)
			continue
		}
		if hold {
			w.add()
			held = append(held, r)
		} else if m.QoS > 0 {
			r.stats.AckedNotInKafka.Add(1)
		}
		r.stats.InFlight.Add(1)
		b.cl.TryProduce(context.Background(), rec, func(_ *kgo.Record, err error) {
			r.stats.InFlight.Add(-1)
			if !hold && m.QoS > 0 {
				r.stats.AckedNotInKafka.Add(-1)
			}
			if err != nil {
				r.stats.fail(err)
				b.forgetStaleTopic(rec.Topic, err)
				if hold {
					w.finish(produceCode(r.name, err))
				} else {
					b.log.Warn("kafka: best-effort record failed", "route", r.name, "err", err)
				}
				return
			}
			r.stats.Produced.Add(1)
			r.stats.observe(time.Since(received))
			if hold {
				w.finish(nil)
			}
		})
	}
	if len(held) > 0 && b.cfg.ProduceTimeout > 0 && !i.keep {
		// The producer keeps every record until Kafka takes it (no delivery
		// timeout), so the publish gets its own deadline: past it the
		// device hears 0x80 (3.1.1: no ack) and retransmits; the record
		// still drains (a counted duplicate).
		t := time.AfterFunc(b.cfg.ProduceTimeout, func() {
			code := packet.Code{Value: packet.ErrUnspecified.Value,
				Reason: fmt.Sprintf("kafka: no ack within %s", b.cfg.ProduceTimeout)}
			if !w.expire(code) {
				return
			}
			for _, r := range held {
				r.stats.expire(code)
			}
		})
		w.mu.Lock()
		w.timer = t
		w.mu.Unlock()
	}
	w.finish(nil)
}

// spoolAppend appends rec to the spool; a QoS 1/2 publish waits for the
// fsync. The Kafka side is the drainer's. A record whose topic Kafka says
// does not exist is refused (0x80 naming the topic) rather than
// acknowledged: the spool must only accept what it can deliver. When Kafka
// does not answer, the record is accepted and the drainer holds it until
// its topic exists.
func (b *Bridge) spoolAppend(r *route, hold bool, rec *kgo.Record, w *wait) {
	if hold {
		w.add()
	}
	b.topics.get(rec.Topic, func(st topicState) {
		if st == topicMissing {
			r.stats.fail(fmt.Errorf("topic %q does not exist", rec.Topic))
			b.log.Warn("kafka: spool publish refused: topic does not exist", "route", r.name, "topic", rec.Topic)
			if hold {
				w.finish(packet.Code{Value: packet.ErrUnspecified.Value,
					Reason: fmt.Sprintf("kafka route %s: topic %q does not exist", r.name, rec.Topic)})
			}
			return
		}
		b.spoolAppendNow(r, hold, rec, w)
	})
}

func (b *Bridge) spoolAppendNow(r *route, hold bool, rec *kgo.Record, w *wait) {
	b.spool.append(r.idx, rec, func(_ int64, err error) {
		if err != nil {
			r.stats.fail(err)
		}
		if hold {
			w.finish(err)
		}
	})
}

// SpoolStats describes the disk spool (zero without spool routes).
func (b *Bridge) SpoolStats() SpoolSnapshot {
	if b.spool == nil {
		return SpoolSnapshot{}
	}
	return b.spool.snapshot()
}

// forgetStaleTopic makes the producer forget a topic Kafka no longer knows
// by its id (deleted and recreated: a new topic id that franz-go would
// otherwise never learn, failing every later record with
// UNKNOWN_TOPIC_ID), at most once a second per topic. Records of the topic
// still buffered fail too; their devices retransmit.
func (b *Bridge) forgetStaleTopic(topic string, err error) {
	if !errors.Is(err, kerr.UnknownTopicID) {
		return
	}
	b.mu.Lock()
	if b.purged == nil {
		b.purged = map[string]time.Time{}
	}
	if time.Since(b.purged[topic]) < time.Second {
		b.mu.Unlock()
		return
	}
	b.purged[topic] = time.Now()
	b.mu.Unlock()
	b.log.Warn("kafka: topic id unknown to Kafka (topic recreated?); reloading its metadata", "topic", topic)
	b.cl.PurgeTopicsFromProducing(topic)
}

// produceCode is the reason code a v5 publisher gets for a failed record:
// 0x97 when the producer's buffer is full (the publisher is too fast for
// Kafka), 0x80 otherwise, with the cause as the reason string.
func produceCode(route string, err error) packet.Code {
	v := packet.ErrUnspecified.Value
	if errors.Is(err, kgo.ErrMaxBuffered) {
		v = packet.ErrQuotaExceeded.Value
	}
	return packet.Code{Value: v, Reason: "kafka route " + route + ": " + err.Error()}
}

// wait calls done once every added record finished (with the first error,
// or nil) or when its timer expires, whichever comes first.
type wait struct {
	mu     sync.Mutex
	n      int
	err    error
	called bool
	done   func(error)
	timer  *time.Timer // set before the final finish; nil without a deadline
}

// expire fails the publish unless done was already called; it reports
// whether it did.
func (w *wait) expire(err error) bool {
	w.mu.Lock()
	if w.called {
		w.mu.Unlock()
		return false
	}
	w.called = true
	w.mu.Unlock()
	w.done(err)
	return true
}

func (w *wait) add() {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
}

func (w *wait) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *wait) finish(err error) {
	w.mu.Lock()
	if err != nil && w.err == nil {
		w.err = err
	}
	w.n--
	last, e := w.n == 0 && !w.called, w.err
	if last {
		w.called = true
	}
	t := w.timer
	w.mu.Unlock()
	if last {
		if t != nil {
			t.Stop()
		}
		w.done(e)
	}
}
