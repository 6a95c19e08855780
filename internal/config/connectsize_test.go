package config

import (
	"io"
	"strings"
	"testing"
)

// TestMaxConnectPacketSize: the key has a default far below
// max_packet_size, is set by flag and CULEX_* variable, and a bad value
// names the key.
func TestMaxConnectPacketSize(t *testing.T) {
	c, err := Parse("serve", nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MQTT.MaxConnectPacketSize != 128<<10 {
		t.Fatalf("default %d", c.MQTT.MaxConnectPacketSize)
	}
	c, err = Parse("serve", nil, []string{"CULEX_MQTT_MAX_CONNECT_PACKET_SIZE=65536"}, io.Discard)
	if err != nil || c.MQTT.MaxConnectPacketSize != 65536 {
		t.Fatalf("from the environment: %v %v", c, err)
	}
	_, err = Parse("serve", []string{"--mqtt.max-connect-packet-size", "10"}, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "mqtt.max_connect_packet_size") {
		t.Fatalf("a bad value: %v", err)
	}
}
