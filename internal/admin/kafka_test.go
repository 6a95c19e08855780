package admin_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/culexmq/culex/internal/config"
)

// TestKafkaRoutes: publishes of a real mosquitto_pub on a Kafka route show
// in GET /api/v1/kafka with the route's config; held records are none.
func TestKafkaRoutes(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0), kfake.SeedTopics(1, "telemetry"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	srv := startNode(t, func(c *config.Config) {
		c.Admin.DefaultPassword = "admin-pw-1"
		c.Kafka.Brokers = strings.Join(kc.ListenAddrs(), ",")
		c.Kafka.Routes = []config.KafkaRoute{{Name: "telemetry", Filter: "devices/+/telemetry", Topic: "telemetry"}}
	})
	a := adminClient(t, srv, "admin-pw-1")
	for range 3 {
		if out, err := mosquittoPub(t, srv, "-i", "dev-1", "-q", "1", "-t", "devices/dev-1/telemetry", "-m", "21.5"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	var k struct {
		Enabled bool
		Routes  []struct {
			Name, Filter, Topic, Ack string
			Matched, Produced        int
			AckedNotInKafka          int `json:"acked_not_in_kafka"`
		}
		Spool struct{ Held int }
	}
	a.want(http.StatusOK, "GET", "/api/v1/kafka", nil, &k)
	if r := k.Routes; !k.Enabled || len(r) != 1 || r[0].Name != "telemetry" || r[0].Filter != "devices/+/telemetry" || r[0].Topic != "telemetry" ||
		r[0].Ack != "kafka" || r[0].Matched != 3 || r[0].Produced != 3 || r[0].AckedNotInKafka != 0 || k.Spool.Held != 0 {
		t.Fatalf("kafka %+v", k)
	}
	var held struct{ Data []any }
	a.want(http.StatusOK, "GET", "/api/v1/kafka/held", nil, &held)
	if len(held.Data) != 0 {
		t.Fatalf("held %+v", held)
	}
	a.wantError(http.StatusNotFound, "not_found", "POST", "/api/v1/kafka/held/telemetry/retry", nil)
	a.wantError(http.StatusNotFound, "not_found", "DELETE", "/api/v1/kafka/held/telemetry", nil)
}
