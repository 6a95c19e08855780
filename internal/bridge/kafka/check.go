package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"syscall"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Check contacts Kafka and verifies every literal route topic and every
// command topic: it exists,
// or is created when cfg.CreateTopics allows. Topics rendered from
// templates are checked by the producer on first use (an unknown topic
// fails those publishes). Errors name the cause: unreachable brokers,
// SASL or TLS failures, missing topics.
func (b *Bridge) Check(ctx context.Context) error {
	adm := kadm.NewClient(b.cl)
	var topics []string
	seen := map[string]bool{}
	for _, r := range b.routes.list {
		if t, ok := r.topic.literal(); ok && !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
	}
	for _, c := range b.commands {
		for _, t := range c.topics {
			if !seen[t] {
				seen[t] = true
				topics = append(topics, t)
			}
		}
	}
	sort.Strings(topics)
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return b.connError(err)
	}
	var missing []string
	for _, t := range topics {
		d, ok := md.Topics[t]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			missing = append(missing, t)
		case d.Err != nil:
			return fmt.Errorf("kafka topic %q: %w", t, d.Err)
		case b.topics != nil:
			b.topics.known(t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !b.cfg.CreateTopics {
		return fmt.Errorf("kafka: topics %v do not exist (create them, or set kafka.create_topics: true)", missing)
	}
	p, rf := int32(b.cfg.Partitions), int16(b.cfg.ReplicationFactor)
	if p == 0 {
		p = -1
	}
	if rf == 0 {
		rf = -1
	}
	res, err := adm.CreateTopics(ctx, p, rf, nil, missing...)
	if err != nil {
		return b.connError(err)
	}
	for _, t := range missing {
		if r, ok := res[t]; ok && r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %q (partitions %d, replication %d): %w", t, p, rf, r.Err)
		}
		b.log.Info("kafka: created topic", "topic", t, "partitions", p, "replication", rf)
		if b.topics != nil {
			b.topics.known(t)
		}
	}
	return nil
}

// connError explains a failure to talk to the brokers.
func (b *Bridge) connError(err error) error {
	var hint string
	sasl := b.cfg.SASL.Mechanism != "" && b.cfg.SASL.Mechanism != "none"
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.UnsupportedSaslMechanism):
		hint = fmt.Sprintf("SASL %s authentication failed for user %q", b.cfg.SASL.Mechanism, b.cfg.SASL.Username)
	case isTLSError(err):
		hint = "TLS handshake failed"
		if b.cfg.TLS.CAFile != "" {
			hint += fmt.Sprintf(" (server certificate checked against kafka.tls.ca_file %s)", b.cfg.TLS.CAFile)
		}
	case sasl && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		// Brokers close the connection on a failed SASL exchange.
		hint = fmt.Sprintf("connection closed during SASL %s: credentials for user %q rejected, or the listener does not speak SASL",
			b.cfg.SASL.Mechanism, b.cfg.SASL.Username)
	case errors.Is(err, context.DeadlineExceeded) && b.cfg.TLS.Enabled:
		hint = "no answer in time (TLS is enabled: is the listener TLS?)"
	case errors.Is(err, context.DeadlineExceeded):
		hint = "no answer in time"
	case errors.As(err, new(*net.DNSError)):
		hint = "cannot resolve the brokers' host name"
	default:
		hint = "cannot reach brokers"
	}
	return fmt.Errorf("kafka %s: %s: %w", b.cfg.Brokers, hint, err)
}

// Unreachable reports whether err from Check means only that no Kafka broker
// answered (refused, reset, timed out, or a host name that does not
// resolve: on Kubernetes the Kafka Service may appear after Culex starts),
// as opposed to a misconfiguration (unknown topics, SASL or TLS failures)
// that waiting will not cure.
func Unreachable(err error) bool {
	if err == nil || isTLSError(err) || errors.Is(err, kerr.SaslAuthenticationFailed) ||
		errors.Is(err, kerr.IllegalSaslState) || errors.Is(err, kerr.UnsupportedSaslMechanism) {
		return false
	}
	var (
		ne  net.Error
		dns *net.DNSError
	)
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &dns) || (errors.As(err, &ne) && ne.Timeout())
}
