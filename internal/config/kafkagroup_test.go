package config

import (
	"io"
	"os"
	"testing"
)

// The default group instance id names the host and the data dir (or the
// first listener) in characters Kafka accepts; given, it is kept.
func TestKafkaGroupInstanceIDDefault(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--data-dir", "/var/lib/culex"}, host + "-var-lib-culex"},
		{[]string{"--data-dir", "", "--listen", "tcp://127.0.0.1:1884"}, host + "-127.0.0.1-1884"},
		{[]string{"--kafka.group-instance-id", "node-0"}, "node-0"},
	} {
		c, err := Parse("serve", tc.args, nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Kafka.GroupInstanceID != tc.want {
			t.Errorf("%v: group_instance_id %q, want %q", tc.args, c.Kafka.GroupInstanceID, tc.want)
		}
	}
}
