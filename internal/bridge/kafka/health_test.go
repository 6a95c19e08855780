package kafka

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestHealthPerRole: a broker whose produce path fails while a consumer's
// fetches on the same address answer is unreachable for the producer,
// logged once, not flapping; it is reachable again when the producer's own
// request succeeds, and the consumer logs nothing.
func TestHealthPerRole(t *testing.T) {
	var buf bytes.Buffer
	h := newHealth(slog.New(slog.NewTextHandler(&buf, nil)))
	prod := h.role("producer").(kgo.HookBrokerE2E)
	cons := h.role("command cmds").(kgo.HookBrokerE2E)
	m := kgo.BrokerMetadata{Host: "k1", Port: 9092}
	hung := kgo.BrokerE2E{ReadErr: errors.New("i/o timeout")}
	for range 5 {
		prod.OnBrokerE2E(m, 0, hung)
		cons.OnBrokerE2E(m, 1, kgo.BrokerE2E{})
	}
	prod.OnBrokerE2E(m, 0, kgo.BrokerE2E{})
	cons.OnBrokerE2E(m, 1, kgo.BrokerE2E{})
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		switch {
		case strings.Contains(l, `msg="kafka: unreachable" role=producer broker=k1:9092`):
			got = append(got, "producer down")
		case strings.Contains(l, `msg="kafka: reachable again" role=producer broker=k1:9092`):
			got = append(got, "producer up")
		default:
			got = append(got, l)
		}
	}
	if want := "producer down,producer up"; strings.Join(got, ",") != want {
		t.Fatalf("log lines %q, want %s; log:\n%s", got, want, buf.String())
	}
}
