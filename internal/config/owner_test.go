package config

import (
	"io"
	"strings"
	"testing"
)

// TestOwnershipAndCapKeys: the keys of session ownership and memory caps
// are set by flag and CULEX_* variable, and bad values name their key.
func TestOwnershipAndCapKeys(t *testing.T) {
	c, err := Parse("serve", []string{"--auth.client-id-binding", "prefix", "--mqtt.max-sessions", "5"},
		[]string{"CULEX_AUTH_SUPERUSER_TAKEOVER=true", "CULEX_MQTT_MAX_QUEUED_BYTES=2097152",
			"CULEX_MQTT_MAX_RETAINED_MESSAGES=7", "CULEX_MQTT_MAX_RETAINED_BYTES=3145728"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.ClientIDBinding != "prefix" || !c.Auth.SuperuserTakeover || c.MQTT.MaxSessions != 5 ||
		c.MQTT.MaxQueuedBytes != 2<<20 || c.MQTT.MaxRetainedMessages != 7 || c.MQTT.MaxRetainedBytes != 3<<20 {
		t.Errorf("got %+v %+v", c.Auth, c.MQTT)
	}
	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"--auth.client-id-binding", "username"}, "auth.client_id_binding"},
		{[]string{"--mqtt.max-queued-bytes", "1000"}, "mqtt.max_queued_bytes"},
		{[]string{"--mqtt.max-retained-bytes", "1000"}, "mqtt.max_retained_bytes"},
	} {
		c, err := Parse("serve", tc.args, nil, io.Discard)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.key)
		}
	}
}
