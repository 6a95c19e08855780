package kafka

import (
	"context"
	"fmt"
)

// NeedsKafka reports whether a route acknowledges publishes only once
// Kafka has their records (ack: kafka): while Kafka is unreachable those
// publishes fail, so the node is not ready for them.
func (b *Bridge) NeedsKafka() bool {
	for _, r := range b.routes.list {
		if r.ack == AckKafka {
			return true
		}
	}
	return false
}

// Ping asks the producer's brokers for an answer (ApiVersions), any one of
// them; an error says none answered within ctx.
func (b *Bridge) Ping(ctx context.Context) error {
	if err := b.cl.Ping(ctx); err != nil {
		return fmt.Errorf("no Kafka broker answers (kafka.brokers %s): %w", b.cfg.Brokers, err)
	}
	return nil
}
