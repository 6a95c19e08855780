package kafka

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// javaMurmur2 is Kafka's Utils.murmur2, written from the Java source, to
// check the bridge partitions keys like the Java client's default
// partitioner: toPositive(murmur2(key)) % partitions.
func javaMurmur2(data []byte) int32 {
	const seed, m, r = uint32(0x9747b28c), uint32(0x5bd1e995), 24
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// Vectors from Kafka's UtilsTest.testMurmur2.
func TestJavaMurmur2Vectors(t *testing.T) {
	cases := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	}
	for k, want := range cases {
		if got := javaMurmur2([]byte(k)); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", k, got, want)
		}
	}
}

// Records land in the partition the Java client would choose for their key.
func TestPartitioningMatchesJavaClient(t *testing.T) {
	const parts = 7
	kc := startKafka(t, kfake.SeedTopics(parts, "p"))
	brokers := kc.ListenAddrs()[0]
	b := newBridge(t, kafkaConfig(brokers, config.KafkaRoute{Filter: "d/+", Topic: "p", Key: "${2}"}))
	addr := startBroker(t, b.Interceptor())
	c, err := dialV5(t, addr, "pub")
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		if code, reason, err := publish(context.Background(), c, fmt.Sprintf("d/key-%d", i), []byte("x")); err != nil || code != 0 {
			t.Fatalf("publish: %v 0x%02x %s", err, code, reason)
		}
	}
	recs := kcatRead(t, brokers, "p", n)
	if len(recs) != n {
		t.Fatalf("kcat read %d records, want %d", len(recs), n)
	}
	for _, r := range recs {
		want := int(javaMurmur2([]byte(r.Key))&0x7fffffff) % parts
		if r.Partition != want {
			t.Errorf("key %q in partition %d, the Java client picks %d", r.Key, r.Partition, want)
		}
	}
}
